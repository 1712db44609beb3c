"""The New Training wizard's estimate: from the project's measured throughput of earlier runs, or "no
history yet"."""

from __future__ import annotations

from ml_platform.datasets.models import Dataset
from ml_platform.training.models import TrainingRun
from tests.helpers import copies


def estimate_url(project, **query) -> str:
    return f"/api/projects/{project.id}/training-runs/estimate/?" + "&".join(f"{k}={v}" for k, v in query.items())


def test_an_empty_project_has_no_history_to_estimate_from(api, project, dataset, retrieval):
    response = api.get(estimate_url(project, dataset_id=dataset["id"], model_config_id=retrieval["id"], epochs=5))
    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["seconds"], answer["cost_usd"], answer["based_on_runs"]) == (None, None, 0)
    assert answer["basis"].startswith("No history yet")


def test_it_scales_the_measured_throughput_by_rows_and_epochs_and_prices_the_gpus(
    api, project, dataset, retrieval, pending_run, settings
):
    settings.GPU_PRICES_PER_HOUR = {"T4": 0.36}
    Dataset.objects.filter(pk=dataset["id"]).update(preview={"rows": 90_000})
    copies(pending_run["id"], 1, status=TrainingRun.COMPLETED, final_metrics={"examples_per_second": 40_000.0})
    copies(pending_run["id"], 1, status=TrainingRun.NOT_BLESSED, final_metrics={"examples_per_second": 50_000.0})
    copies(pending_run["id"], 1, status=TrainingRun.FAILED, final_metrics={"examples_per_second": 1.0})  # not finished
    query = {"dataset_id": dataset["id"], "model_config_id": retrieval["id"], "epochs": 10}
    answer = api.get(estimate_url(project, **query, gpu_type="T4", gpu_count=2)).json()
    assert (answer["rows"], answer["examples"], answer["based_on_runs"]) == (90_000, 900_000, 2)
    assert answer["examples_per_second"] == 45_000.0
    assert answer["seconds"] == 20.0
    assert answer["cost_usd"] == 0.0  # 2 x $0.36/h x 20 s rounds to zero cents
    assert answer["basis"].startswith("From 2 earlier retrieval runs, ~45k examples/s")
    half = api.get(estimate_url(project, **query, sample_percent=50)).json()
    assert half["seconds"] == 10.0


def test_objects_of_another_project_are_refused_naming_the_field(api, project, oscars_project, retrieval):
    response = api.get(estimate_url(project, dataset_id=999, model_config_id=retrieval["id"]))
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "dataset_id", "message": "no dataset 999 in this project"}]
    assert api.get(estimate_url(oscars_project, experiment_id=1)).status_code == 404
