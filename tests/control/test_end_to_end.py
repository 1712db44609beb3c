"""The product's core loop through the API, on small generated data, with the real worker and serving process:

experiment (and a second one, reusing its data stages) -> best experiments -> promote to a training run -> eight stages in order, a metrics row per epoch
-> blessed -> registry version -> deploy -> a recommendation over HTTP -> results vs the experiment ->
rerun from the Trainer with an edited config (earlier stages reused, the previous version as the baseline)
-> compare -> edit a finished run's config and rerun it.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
from django.conf import settings as django_settings

from ml_platform.deployment import local
from ml_platform.training.worker import Worker
from ml_pipeline import demo_data
from ml_pipeline.demo_configs import DEMO_FEATURE_CONFIG, DEMO_MAPPING, DEMO_MODEL_CONFIGS
from ml_pipeline.spec import STAGES
from tests.control.test_deployment import serving  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Every snapshot of a run's stage table must read: finished stages, at most one running, then pending ones.
IN_ORDER = re.compile(r"^(?:(?:completed|cached) )*(?:running )?(?:(?:pending|skipped) )*$")


def ok(response, status=200) -> dict:
    assert response.status_code == status, response.content
    return response.json()


def until_finished(api, worker: Worker, url: str, timeout: float = 240) -> tuple[dict, list[list[str]]]:
    """Step the worker until the run at ``url`` is terminal; every stage table seen on the way."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.step()
        run = ok(api.get(url))
        statuses = [stage["status"] for stage in run["stages"]]
        if not seen or seen[-1] != statuses:
            seen.append(statuses)
        if run["is_terminal"]:
            return run, seen
        time.sleep(0.2)
    raise AssertionError(f"{url} did not finish: {seen[-1]}")


def test_from_an_experiment_to_a_served_model_and_back_to_a_rerun(api, project, serving):  # noqa: F811
    path = Path(django_settings.DATASET_ALLOWED_ROOTS[0]) / "end-to-end" / uuid.uuid4().hex / "purchases.parquet"
    demo_data.write(demo_data.DemoSpec(rows=6_000, seed=5, products=300), path)
    dataset = ok(api.post(f"/api/projects/{project.id}/datasets/", {
        "name": "purchases", "source": {"kind": "file", "path": str(path)}, "mapping": DEMO_MAPPING}), 201)
    features = ok(api.post(f"/api/projects/{project.id}/feature-configs/", {
        "name": "features", "dataset_id": dataset["id"], "config": DEMO_FEATURE_CONFIG}), 201)
    model = ok(api.post(f"/api/projects/{project.id}/model-configs/", {
        "name": "two-tower", "feature_config_id": features["id"],
        "config": DEMO_MODEL_CONFIGS["Retrieval two-tower"]}), 201)
    worker = Worker(max_concurrent=1)
    try:
        # -- a quick test on 60% of the data
        experiment = ok(api.post(f"/api/projects/{project.id}/experiments/", {
            "dataset_id": dataset["id"], "feature_config_id": features["id"], "model_config_id": model["id"],
            "split_config": {"strategy": "time_holdout", "holdout_days": 45, "sample_percent": 60},
            "training_params": {"epochs": 2, "batch_size": 256, "early_stopping": {"enabled": False}}}), 201)
        experiment, _ = until_finished(api, worker, f"/api/experiments/{experiment['id']}/")
        assert experiment["status"] == "completed", experiment["error"]
        assert {s["name"]: s["status"] for s in experiment["stages"]}["Pusher"] == "skipped"
        assert [row["epoch"] for row in ok(api.get(f"/api/experiments/{experiment['id']}/metrics/"))["epochs"]] == [1, 2]
        # -- a second one with another learning rate reuses the first one's data stages
        second = ok(api.post(f"/api/experiments/{experiment['id']}/rerun/", {
            "training_params": {**experiment["training_params"], "learning_rate": 0.002}}), 201)
        second, _ = until_finished(api, worker, f"/api/experiments/{second['id']}/")
        assert second["status"] == "completed", second["error"]
        assert [s["status"] for s in second["stages"]] == ["completed"] + ["cached"] * 4 + ["completed"] * 2 + [
            "skipped"]
        [retrieval] = [row for row in ok(api.get(f"/api/projects/{project.id}/experiments/best/"))
                       if row["model_type"] == "retrieval"]
        assert retrieval["count"] == 2
        values = {row["experiment_id"]: row["value"] for row in retrieval["top"]}
        assert values == {e["id"]: e["final_metrics"]["recall_at_100"] for e in (experiment, second)}
        assert [row["value"] for row in retrieval["top"]] == sorted(values.values(), reverse=True)

        # -- promoted to a training run on all the data: eight stages, in order
        run = ok(api.post(f"/api/experiments/{experiment['id']}/promote/", {"name": "recs"}), 201)
        run_url = f"/api/training-runs/{run['id']}/"
        run, seen = until_finished(api, worker, run_url)
        assert run["status"] == "completed", run["error"]
        assert all(IN_ORDER.match(" ".join(statuses) + " ") for statuses in seen), seen
        assert any("running" in statuses for statuses in seen)  # progress was visible while it ran
        assert [(s["name"], s["status"]) for s in run["stages"]] == [(s, "completed") for s in STAGES]
        starts = [s["started_at"] for s in run["stages"]]
        assert starts == sorted(starts)
        epochs = ok(api.get(f"{run_url}metrics/"))["epochs"]
        assert [row["epoch"] for row in epochs] == [1, 2] and all(row["loss"] is not None for row in epochs)
        assert run["blessed"] is True and run["blessing_reasons"]
        assert run["split_config"]["sample_percent"] == 100.0

        # -- results against the experiment it came from
        versus = ok(api.get(f"{run_url}vs-experiment/"))
        assert {row["metric"] for row in versus["metrics"]} >= {"loss", "recall_at_10", "recall_at_100"}
        recall = next(row for row in versus["metrics"] if row["metric"] == "recall_at_100")
        assert recall["delta"] == pytest.approx(recall["run"] - recall["experiment"])

        # -- registry, then deployment, then a real recommendation over HTTP
        pushed = ok(api.post(f"{run_url}push/"))
        assert pushed["registered_model"]["latest_version"] == 1
        registered_url = f"/api/registered-models/{pushed['registered_model']['id']}/"
        deployment = ok(api.post(f"{registered_url}deploy/", {"version": 1}))
        assert (deployment["status"], deployment["version"]) == ("deployed", 1)
        examples = Path(next(a["uri"] for a in run["artifacts"] if a["stage"] == "ExampleGen")) / "output"
        buyer = pq.read_table(examples / "train", columns=["buyer_id"]).column(0)[0].as_py()
        code, answer = local.http_json("GET", f"{serving}/recommend?buyer_id={quote(buyer)}&k=5", timeout=30)
        assert code == 200, answer
        assert answer["version"] == 1 and len(answer["recommendations"]) == 5

        # -- rerun from the Trainer with more epochs: the data stages are reused, v1 is the baseline to beat
        rerun = ok(api.post(f"{run_url}rerun/", {"from_stage": "Trainer",
                                                 "training_params": {**run["training_params"], "epochs": 3}}), 201)
        assert rerun["config_diff"] == [{"field": "training_params.epochs", "before": 2, "after": 3}]
        rerun_url = f"/api/training-runs/{rerun['id']}/"
        rerun, seen = until_finished(api, worker, rerun_url)
        assert rerun["status"] in ("completed", "not_blessed"), rerun["error"]
        # Compile checks the whole spec, so it runs again; ExampleGen .. Transform are the first run's.
        assert [s["status"] for s in rerun["stages"]] == ["completed"] + ["cached"] * 4 + ["completed"] * 3
        first_uris, rerun_uris = ({a["stage"]: a["uri"] for a in r["artifacts"]} for r in (run, rerun))
        assert all(rerun_uris[stage] == first_uris[stage] for stage in STAGES[1:5])
        assert rerun_uris["Trainer"] != first_uris["Trainer"]
        assert rerun["final_metrics"]["baseline_label"] == "recs v1"
        assert any("vs baseline recs v1" in reason for reason in rerun["blessing_reasons"])
        assert [row["epoch"] for row in ok(api.get(f"{rerun_url}metrics/"))["epochs"]] == [1, 2, 3]

        compared = ok(api.get(f"/api/training-runs/compare/?ids={run['id']},{rerun['id']}"))
        assert [len(line["points"]) for line in compared["curves"]["loss"]] == [2, 3]
        assert next(row for row in compared["config"] if row["field"] == "training_params.epochs")["differs"]

        # -- edit the finished run's config; a plain rerun then uses the edit
        edited = ok(api.patch(f"{rerun_url}config/", {"training_params": {"epochs": 5, "batch_size": 128}}))
        assert edited["updated_fields"] == ["training_params"]
        again = ok(api.post(f"{rerun_url}rerun/"), 201)
        assert (again["run_number"], again["total_epochs"], again["training_params"]["batch_size"]) == (3, 5, 128)
        assert again["rerun_of"]["id"] == rerun["id"] and again["config_diff"] == []
        assert ok(api.post(f"/api/training-runs/{again['id']}/cancel/"))["status"] == "cancelled"

        ok(api.post(f"{registered_url}undeploy/"))
    finally:
        worker.shutdown()
