"""The product's core loop through the API, on small generated data, with the real worker and serving process:

experiment (and a second one, reusing its data stages) -> best experiments -> promote to a training run -> eight stages in order, a metrics row per epoch
-> blessed -> registry version -> deploy -> a recommendation over HTTP -> results vs the experiment ->
rerun from the Trainer with an edited config (earlier stages reused, the previous version as the baseline)
-> compare -> edit a finished run's config and rerun it.

The loop runs once for the module (``loop``), recording what each step answered; each test checks one
step's outcome.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
from django.conf import settings as django_settings

from ml_pipeline import demo_data
from ml_pipeline.demo_configs import DEMO_FEATURE_CONFIG, DEMO_MAPPING, DEMO_MODEL_CONFIGS
from ml_pipeline.spec import STAGES
from ml_platform.deployment import serving_process
from ml_platform.training.worker import Worker
from tests.helpers import api_client_for, carry_out_deployments, served_project, wait_until

# Not transactional: the loop's rows are committed by its module fixture, and a transactional test's flush
# would remove them.
pytestmark = [pytest.mark.slow, pytest.mark.django_db]

# Every snapshot of a run's stage table must read: finished stages, at most one running, then pending ones.
IN_ORDER = re.compile(r"^(?:(?:completed|cached) )*(?:running )?(?:(?:pending|skipped) )*$")


def ok(response, status=200) -> dict:
    assert response.status_code == status, response.content
    return response.json()


def until_finished(api, worker: Worker, url: str, timeout: float = 240) -> tuple[dict, list[list[str]]]:
    """Step the worker until the run at ``url`` is terminal; every stage table seen on the way."""
    seen = []

    def finished():
        run = ok(api.get(url))
        statuses = [stage["status"] for stage in run["stages"]]
        if not seen or seen[-1] != statuses:
            seen.append(statuses)
        return run if run["is_terminal"] else None

    run = wait_until(
        finished,
        timeout,
        step=worker.step,
        interval=0.2,
        message=lambda: f"{url} did not finish: {seen[-1] if seen else 'never read'}",
    )
    return run, seen


@pytest.fixture(scope="module")
def loop(django_db_setup, django_db_blocker):
    """The loop, once: what each step answered (and, for runs, every stage table seen while they ran)."""
    with served_project(django_db_blocker, "e2e") as (made, serving):
        api, project = api_client_for(made.owner), made.project
        path = Path(django_settings.DATASET_ALLOWED_ROOTS[0]) / "end-to-end" / made.unique / "purchases.parquet"
        demo_data.write(demo_data.DemoSpec(rows=6_000, seed=5, products=300), path)
        dataset = ok(
            api.post(
                f"/api/projects/{project.id}/datasets/",
                {"name": "purchases", "source": {"kind": "file", "path": str(path)}, "mapping": DEMO_MAPPING},
            ),
            201,
        )
        features = ok(
            api.post(
                f"/api/projects/{project.id}/feature-configs/",
                {"name": "features", "dataset_id": dataset["id"], "config": DEMO_FEATURE_CONFIG},
            ),
            201,
        )
        model = ok(
            api.post(
                f"/api/projects/{project.id}/model-configs/",
                {
                    "name": "two-tower",
                    "feature_config_id": features["id"],
                    "config": DEMO_MODEL_CONFIGS["Retrieval two-tower"],
                },
            ),
            201,
        )
        s = SimpleNamespace(api=api, project=project)
        worker = Worker(max_concurrent=1)
        try:
            # -- a quick test on 60% of the data
            experiment = ok(
                api.post(
                    f"/api/projects/{project.id}/experiments/",
                    {
                        "dataset_id": dataset["id"],
                        "feature_config_id": features["id"],
                        "model_config_id": model["id"],
                        "split_config": {"strategy": "time_holdout", "holdout_days": 45, "sample_percent": 60},
                        "training_params": {"epochs": 2, "batch_size": 256, "early_stopping": {"enabled": False}},
                    },
                ),
                201,
            )
            s.experiment, _ = until_finished(api, worker, f"/api/experiments/{experiment['id']}/")
            s.experiment_epochs = ok(api.get(f"/api/experiments/{experiment['id']}/metrics/"))["epochs"]
            # -- a second one with another learning rate
            second = ok(
                api.post(
                    f"/api/experiments/{experiment['id']}/rerun/",
                    {"training_params": {**s.experiment["training_params"], "learning_rate": 0.002}},
                ),
                201,
            )
            s.second, _ = until_finished(api, worker, f"/api/experiments/{second['id']}/")
            s.best = ok(api.get(f"/api/projects/{project.id}/experiments/best/"))

            # -- promoted to a training run on all the data
            run = ok(api.post(f"/api/experiments/{experiment['id']}/promote/", {"name": "recs"}), 201)
            s.run_url = f"/api/training-runs/{run['id']}/"
            s.run, s.run_seen = until_finished(api, worker, s.run_url)
            s.run_epochs = ok(api.get(f"{s.run_url}metrics/"))["epochs"]
            s.versus = ok(api.get(f"{s.run_url}vs-experiment/"))

            # -- registry, then deployment, then a real recommendation over HTTP
            s.pushed = ok(api.post(f"{s.run_url}push/"))
            registered_url = f"/api/registered-models/{s.pushed['registered_model']['id']}/"
            ok(api.post(f"{registered_url}deploy/", {"version": 1}))
            carry_out_deployments()  # what the worker does
            s.deployment = ok(api.get(f"{registered_url}deployment/"))
            examples = Path(next(a["uri"] for a in s.run["artifacts"] if a["stage"] == "ExampleGen")) / "output"
            buyer = pq.read_table(examples / "train", columns=["buyer_id"]).column(0)[0].as_py()
            s.recommended = serving_process.http_json(
                "GET", f"{serving}/recommend?buyer_id={quote(buyer)}&k=5", timeout=30
            )

            # -- rerun from the Trainer with more epochs
            rerun = ok(
                api.post(
                    f"{s.run_url}rerun/",
                    {"from_stage": "Trainer", "training_params": {**s.run["training_params"], "epochs": 3}},
                ),
                201,
            )
            s.rerun_diff = rerun["config_diff"]
            s.rerun_url = f"/api/training-runs/{rerun['id']}/"
            s.rerun, _ = until_finished(api, worker, s.rerun_url)
            s.rerun_epochs = ok(api.get(f"{s.rerun_url}metrics/"))["epochs"]
            s.compared = ok(api.get(f"/api/training-runs/compare/?ids={run['id']},{rerun['id']}"))

            # -- edit the finished run's config; a plain rerun then uses the edit
            s.edited = ok(api.patch(f"{s.rerun_url}config/", {"training_params": {"epochs": 5, "batch_size": 128}}))
            s.again = ok(api.post(f"{s.rerun_url}rerun/"), 201)
            s.again_cancelled = ok(api.post(f"/api/training-runs/{s.again['id']}/cancel/"))

            ok(api.post(f"{registered_url}undeploy/"))
            carry_out_deployments()
        finally:
            worker.shutdown()
        yield s


def stage_statuses(run: dict) -> list[str]:
    return [s["status"] for s in run["stages"]]


def test_a_quick_experiment_trains_without_pushing(loop):
    assert loop.experiment["status"] == "completed", loop.experiment["error"]
    assert {s["name"]: s["status"] for s in loop.experiment["stages"]}["Pusher"] == "skipped"
    assert [row["epoch"] for row in loop.experiment_epochs] == [1, 2]


def test_a_second_experiment_reuses_the_first_ones_data_stages(loop):
    assert loop.second["status"] == "completed", loop.second["error"]
    assert stage_statuses(loop.second) == ["completed"] + ["cached"] * 4 + ["completed"] * 2 + ["skipped"]


def test_the_best_experiments_rank_both_by_recall(loop):
    [retrieval] = [row for row in loop.best if row["model_type"] == "retrieval"]
    assert retrieval["count"] == 2
    values = {row["experiment_id"]: row["value"] for row in retrieval["top"]}
    assert values == {e["id"]: e["final_metrics"]["recall_at_100"] for e in (loop.experiment, loop.second)}
    assert [row["value"] for row in retrieval["top"]] == sorted(values.values(), reverse=True)


def test_a_promoted_experiment_runs_the_eight_stages_in_order_on_all_the_data(loop):
    run = loop.run
    assert run["status"] == "completed", run["error"]
    assert all(IN_ORDER.match(" ".join(statuses) + " ") for statuses in loop.run_seen), loop.run_seen
    assert any("running" in statuses for statuses in loop.run_seen)  # progress was visible while it ran
    assert [(s["name"], s["status"]) for s in run["stages"]] == [(s, "completed") for s in STAGES]
    starts = [s["started_at"] for s in run["stages"]]
    assert starts == sorted(starts)
    assert run["split_config"]["sample_percent"] == 100.0


def test_the_promoted_run_has_a_metrics_row_per_epoch_and_is_blessed(loop):
    assert [row["epoch"] for row in loop.run_epochs] == [1, 2] and all(
        row["loss"] is not None for row in loop.run_epochs
    )
    assert loop.run["blessed"] is True and loop.run["blessing_reasons"]


def test_the_run_is_compared_with_the_experiment_it_came_from(loop):
    assert {row["metric"] for row in loop.versus["metrics"]} >= {"loss", "recall_at_10", "recall_at_100"}
    recall = next(row for row in loop.versus["metrics"] if row["metric"] == "recall_at_100")
    assert recall["delta"] == pytest.approx(recall["run"] - recall["experiment"])


def test_the_pushed_version_is_deployed_and_recommends_over_http(loop):
    assert loop.pushed["registered_model"]["latest_version"] == 1
    assert (loop.deployment["status"], loop.deployment["version"]) == ("deployed", 1)
    code, answer = loop.recommended
    assert code == 200, answer
    assert answer["version"] == 1 and len(answer["recommendations"]) == 5


def test_a_rerun_from_the_trainer_reuses_the_data_stages(loop):
    assert loop.rerun_diff == [{"field": "training_params.epochs", "before": 2, "after": 3}]
    assert loop.rerun["status"] in ("completed", "not_blessed"), loop.rerun["error"]
    # Compile checks the whole spec, so it runs again; ExampleGen .. Transform are the first run's.
    assert stage_statuses(loop.rerun) == ["completed"] + ["cached"] * 4 + ["completed"] * 3
    first_uris, rerun_uris = ({a["stage"]: a["uri"] for a in r["artifacts"]} for r in (loop.run, loop.rerun))
    assert all(rerun_uris[stage] == first_uris[stage] for stage in STAGES[1:5])
    assert rerun_uris["Trainer"] != first_uris["Trainer"]
    assert [row["epoch"] for row in loop.rerun_epochs] == [1, 2, 3]


def test_the_rerun_is_judged_against_the_previous_version(loop):
    assert loop.rerun["final_metrics"]["baseline_label"] == "recs v1"
    assert any("vs baseline recs v1" in reason for reason in loop.rerun["blessing_reasons"])


def test_compare_shows_both_runs_curves_and_the_config_difference(loop):
    assert [len(line["points"]) for line in loop.compared["curves"]["loss"]] == [2, 3]
    assert next(row for row in loop.compared["config"] if row["field"] == "training_params.epochs")["differs"]


def test_a_finished_runs_edited_config_is_what_its_next_rerun_uses(loop):
    assert loop.edited["updated_fields"] == ["training_params"]
    again = loop.again
    assert (again["run_number"], again["total_epochs"], again["training_params"]["batch_size"]) == (3, 5, 128)
    assert again["rerun_of"]["id"] == loop.rerun["id"] and again["config_diff"] == []
    assert loop.again_cancelled["status"] == "cancelled"
