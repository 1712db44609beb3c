"""Training runs through the API: creation and its validation, the list, the detail, cancel, delete,
rerun, editing, what a finished run produced (statistics, schema, logs, metrics), and access.

Most tests queue runs without executing them. The tests of a finished run's
outputs share ONE real run (a few thousand rows of demo data, two epochs),
executed by the worker in child processes: it is created once per module,
committed outside the tests' transactions so the children can read it, and
removed at the end of the module.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ml_pipeline.spec import STAGES
from ml_platform.projects import services as project_services
from ml_platform.training import services, specs
from ml_platform.training.models import TrainingRun
from tests.helpers import (
    FEATURES,
    api_client_for,
    cancelled,
    catalog_of,
    copies,
    create_run,
    errors_by_field,
    file_dataset,
    runs_url,
)

pytestmark = pytest.mark.django_db


# --------------------------------------------------------------------------- creation


def test_it_queues_a_run_and_answers_its_detail(api, project, run_body, dataset, feature_config, retrieval):
    run = create_run(api, project, run_body)
    assert run["status"] == "pending" and run["run_number"] == 1 and run["display_name"] == "recs #1"
    assert [s["name"] for s in run["stages"]] == list(STAGES)
    assert {s["status"] for s in run["stages"]} == {"pending"}
    assert run["dataset"] == {"id": dataset["id"], "name": "purchases"}
    assert run["feature_config"] == {"id": feature_config["id"], "name": "standard"}
    assert run["model_config"] == {"id": retrieval["id"], "name": "two-tower"}
    assert run["model_type"] == "retrieval" and run["total_epochs"] == 2
    assert run["training_params"] == {"epochs": 2, "batch_size": 64}
    assert run["feature_config_snapshot"] == feature_config["config"]
    assert run["gpu_config"] == {
        "gpu_type": None,
        "gpu_count": 0,
        "preemptible": False,
        "allow_cpu_fallback": False,
        "fallback": None,
    }
    assert run["schedule_config"] == {
        "schedule_type": "none",
        "timezone": "UTC",
        "scheduler_job_id": None,
        "scheduled_for": None,
    }
    assert run["registered_model"]["name"] == run["registered_model_name"] == "recs"
    assert run["artifacts"] == [] and run["final_metrics"] == {} and run["blessed"] is None
    assert run["error"] is None and run["rerun_of"] is None and run["created_by"] == "olivia"
    assert run["duration_seconds"] is None and run["cost_usd"] == 0
    assert api.get(f"/api/training-runs/{run['id']}/").json() == run


def test_it_numbers_runs_per_project(api, project, run_body, olivia, purchases_csv, purchases_mapping):
    assert [create_run(api, project, run_body)["run_number"] for _ in range(3)] == [1, 2, 3]
    other = project_services.create_project(olivia, "other-recs")
    dataset, features, model = catalog_of(
        other, olivia, purchases_csv, purchases_mapping, FEATURES, {"model_type": "retrieval"}
    )
    first = create_run(
        api,
        other,
        {"name": "recs", "dataset_id": dataset.id, "feature_config_id": features.id, "model_config_id": model.id},
    )
    assert first["run_number"] == 1


def test_bad_training_params_are_named(api, project, run_body):
    response = api.post(runs_url(project), {**run_body, "training_params": {"epochs": 0, "batch_size": 64}})
    assert response.status_code == 422
    assert errors_by_field(response) == {"training_params.epochs": "Input should be greater than or equal to 1"}


def test_a_baseline_model_of_another_project_is_refused(api, project, run_body, oscars_project):
    theirs = Path(settings.PIPELINE_ROOT) / "pushed" / f"{specs.pipeline_name(oscars_project.unique_name)}.recs" / "1"
    theirs.mkdir(parents=True, exist_ok=True)
    response = api.post(runs_url(project), {**run_body, "evaluator_config": {"baseline_model_uri": str(theirs)}})
    assert response.status_code == 422
    assert "neither a model of this project" in errors_by_field(response)["evaluator_config.baseline_model_uri"]


def test_a_baseline_model_of_the_same_project_is_accepted(api, project, run_body):
    ours = Path(settings.PIPELINE_ROOT) / "pushed" / f"{specs.pipeline_name(project.unique_name)}.recs" / "1"
    ours.mkdir(parents=True, exist_ok=True)
    create_run(api, project, run_body, evaluator_config={"baseline_model_uri": str(ours)})


def test_a_time_holdout_split_needs_holdout_days(api, project, run_body):
    response = api.post(runs_url(project), {**run_body, "split_config": {"strategy": "time_holdout"}})
    assert response.status_code == 422
    assert errors_by_field(response) == {"split_config.holdout_days": "required for the time_holdout strategy"}


def test_the_dataset_must_belong_to_the_project(
    api, project, run_body, oscar, oscars_project, purchases_csv, purchases_mapping
):
    foreign = file_dataset(oscars_project, oscar, purchases_csv, purchases_mapping, name="theirs")
    response = api.post(runs_url(project), {**run_body, "dataset_id": foreign.id})
    assert response.status_code == 422
    assert errors_by_field(response) == {"dataset_id": f"no dataset {foreign.id} in this project"}


def test_a_threshold_on_a_metric_the_model_does_not_compute_is_named(api, project, run_body):
    thresholds = [{"metric": "rmse", "value": 1.0}, {"metric": "recall_at_100", "value": 0.1}]
    response = api.post(runs_url(project), {**run_body, "evaluator_config": {"thresholds": thresholds}})
    assert response.status_code == 422
    assert errors_by_field(response) == {
        "evaluator_config.thresholds[0].metric": "rmse needs a rating head; this is a retrieval model",
        "evaluator_config.thresholds[1].metric": "recall_at_100 is not computed: model.retrieval_k is [5, 10]",
    }


def test_a_name_used_by_another_model_type_is_refused(api, project, run_body, ranking):
    create_run(api, project, run_body)
    response = api.post(runs_url(project), {**run_body, "model_config_id": ranking["id"]})
    assert response.status_code == 422
    assert errors_by_field(response) == {"name": "'recs' is a retrieval model; this run trains a ranking model"}
    assert TrainingRun.objects.count() == 1


def test_gpu_and_schedule_settings_are_checked(api, project, run_body):
    response = api.post(runs_url(project), {**run_body, "gpu_config": {"gpu_type": "K80", "gpu_count": 1}})
    assert response.status_code == 422
    assert set(errors_by_field(response)) == {"gpu_config.gpu_type"}
    response = api.post(runs_url(project), {**run_body, "schedule_config": {"schedule_type": "fortnightly"}})
    assert set(errors_by_field(response)) == {"schedule_config.schedule_type"}


def test_a_missing_field_is_named(api, project, run_body):
    response = api.post(runs_url(project), {k: v for k, v in run_body.items() if k != "model_config_id"})
    assert response.status_code == 422
    assert errors_by_field(response) == {"model_config_id": "required (or give experiment_id)"}


# --------------------------------------------------------------------------- the list


def test_it_lists_newest_first_in_pages_with_the_count(api, project, pending_run):
    copies(pending_run["id"], 4)
    page = api.get(runs_url(project) + "?page=2&page_size=2").json()
    assert (page["count"], page["page"], page["page_size"]) == (5, 2, 2)
    assert [r["run_number"] for r in page["results"]] == [3, 2]
    assert api.get(runs_url(project)).json()["page_size"] == 20
    assert [r["run_number"] for r in api.get(runs_url(project) + "?page=3&page_size=2").json()["results"]] == [1]
    assert api.get(runs_url(project) + "?page=9").json() == {"count": 5, "page": 9, "page_size": 20, "results": []}


def test_a_list_item_is_the_compact_card(api, project, pending_run):
    copies(
        pending_run["id"],
        1,
        status=TrainingRun.COMPLETED,
        blessed=True,
        current_stage="Pusher",
        final_metrics={"recall_at_100": 0.42, "recall_at_10": 0.2},
        gpu_config={"gpu_type": "T4", "gpu_count": 2},
        stages={s: {"status": "completed", "summary": "..."} for s in STAGES},
    )
    newest, oldest = api.get(runs_url(project)).json()["results"]
    assert set(newest) == {
        "id",
        "kind",
        "display_name",
        "run_number",
        "name",
        "model_type",
        "status",
        "current_stage",
        "current_epoch",
        "total_epochs",
        "stages",
        "recall_at_100",
        "rmse",
        "blessed",
        "gpu_type",
        "gpu_count",
        "dataset_name",
        "error_message",
        "created_at",
        "duration_seconds",
        "cost_usd",
        "error_stage",
        "dataset_id",
        "feature_config_id",
        "feature_config_name",
        "model_config_id",
        "model_config_name",
        "registered_model_id",
        "registry_version",
        "deployed",
        "schedule",
        "metric_split",
        "actions",
    }
    assert (newest["status"], newest["recall_at_100"], newest["rmse"], newest["blessed"]) == (
        "completed",
        0.42,
        None,
        True,
    )
    assert list(newest["stages"].items()) == [(s, "completed") for s in STAGES]
    assert (newest["gpu_type"], newest["gpu_count"], newest["dataset_name"]) == ("T4", 2, "purchases")
    assert (newest["kind"], newest["display_name"]) == ("training", "recs #2")
    assert oldest["stages"] == {s: "pending" for s in STAGES} and oldest["gpu_type"] is None
    assert (newest["feature_config_name"], newest["model_config_name"]) == ("standard", "two-tower")
    assert (newest["metric_split"], oldest["metric_split"]) == ("test", "eval")


def test_a_list_item_names_the_actions_its_run_accepts_now(api, project, pending_run):
    """The card's buttons: the same rules the actions' endpoints refuse with (a completed, blessed run
    without a pushed model cannot be pushed; a queued one can only be cancelled)."""
    copies(pending_run["id"], 1, status=TrainingRun.COMPLETED, blessed=True)
    copies(pending_run["id"], 1, status=TrainingRun.NOT_BLESSED, blessed=False)
    not_blessed, completed, pending = api.get(runs_url(project)).json()["results"]
    assert pending["actions"] == ["cancel"]
    assert completed["actions"] == ["rerun", "edit", "delete"]
    assert not_blessed["actions"] == ["rerun", "edit", "delete"]
    assert api.post(f"/api/training-runs/{completed['id']}/push/", {}).json()["error"] == (
        "This run exported no serving model (it ran without the Pusher)"
    )


def test_it_filters_by_status_model_type_dataset_and_search(
    api, project, pending_run, ranking, run_body, purchases_csv, purchases_mapping, olivia
):
    copies(pending_run["id"], 2, status=TrainingRun.FAILED)
    copies(pending_run["id"], 1, name="Churn model", description="", model_type="ranking")
    copies(pending_run["id"], 1, description="the BIG one")
    second = file_dataset(project, olivia, purchases_csv, purchases_mapping, name="second")
    copies(pending_run["id"], 1, dataset=second)

    def numbers(query):
        response = api.get(runs_url(project) + query)
        assert response.status_code == 200, response.content
        assert response.json()["count"] == len(response.json()["results"])
        return sorted(r["run_number"] for r in response.json()["results"])

    assert numbers("?status=failed") == [2, 3]
    assert numbers("?status=failed,pending") == [1, 2, 3, 4, 5, 6]
    assert numbers("?model_type=ranking") == [4]
    assert numbers(f"?dataset_id={second.id}") == [6]
    assert numbers("?search=churn") == [4]
    assert numbers("?search=big") == [5]
    assert numbers("?search=RECS&status=failed") == [2, 3]
    response = api.get(runs_url(project) + "?status=finished")
    assert response.status_code == 422
    assert "status" in errors_by_field(response)


def test_page_size_is_limited(api, project):
    response = api.get(runs_url(project) + "?page_size=101")
    assert response.status_code == 422
    assert errors_by_field(response) == {"page_size": "Input should be less than or equal to 100"}
    assert api.get(runs_url(project) + "?page=0").status_code == 422


def test_a_page_costs_the_same_queries_whatever_its_size(api, project, pending_run):
    def queries(page_size):
        with CaptureQueriesContext(connection) as captured:
            response = api.get(runs_url(project) + f"?page_size={page_size}")
        assert response.status_code == 200
        return len(captured), len(response.json()["results"])

    copies(pending_run["id"], 60, status=TrainingRun.COMPLETED, final_metrics={"recall_at_100": 0.3})
    small, large = queries(2), queries(50)
    assert small[1] == 2 and large[1] == 50
    assert small[0] == large[0]


# --------------------------------------------------------------------------- cancel, delete, rerun


def test_cancelling_a_pending_run_cancels_it_at_once(api, pending_run):
    run = cancelled(api, pending_run)
    assert run["status"] == "cancelled" and run["is_terminal"]
    assert run["error"]["message"] == "cancelled before it started"
    again = api.post(f"/api/training-runs/{run['id']}/cancel/")
    assert again.status_code == 409
    assert again.json() == {"error": "Run is already cancelled"}


def test_a_run_that_has_not_finished_cannot_be_deleted(api, pending_run):
    response = api.delete(f"/api/training-runs/{pending_run['id']}/")
    assert response.status_code == 409
    assert response.json() == {"error": "Only finished runs can be deleted; this one is pending"}
    assert TrainingRun.objects.filter(pk=pending_run["id"]).exists()


def test_deleting_a_run_keeps_the_stages_another_run_reused(api, project, run_body):
    first = TrainingRun.objects.get(pk=cancelled(api, create_run(api, project, run_body))["id"])
    second = TrainingRun.objects.get(pk=cancelled(api, create_run(api, project, run_body))["id"])
    folder = services.run_folder(first)
    for stage in ("ExampleGen", "Trainer"):
        (folder / stage / "output").mkdir(parents=True)
    (folder / "run.json").write_text("{}")
    TrainingRun.objects.filter(pk=second.pk).update(
        artifacts={"ExampleGen": {"type": "Examples", "uri": str(folder / "ExampleGen")}}
    )
    assert api.delete(f"/api/training-runs/{first.pk}/").status_code == 204
    assert sorted(p.name for p in folder.iterdir()) == ["ExampleGen"]
    assert (folder / "ExampleGen" / "output").is_dir()


def test_deleting_a_finished_run_removes_its_artifacts(api, pending_run):
    run = TrainingRun.objects.get(pk=cancelled(api, pending_run)["id"])
    folder = services.run_folder(run)
    (folder / "ExampleGen").mkdir(parents=True)
    (folder / "ExampleGen" / "stage.log").write_text("partial work\n")
    response = api.delete(f"/api/training-runs/{run.pk}/")
    assert response.status_code == 204
    assert not folder.exists()
    assert api.get(f"/api/training-runs/{run.pk}/").status_code == 404


def test_only_a_finished_run_can_be_rerun(api, pending_run):
    response = api.post(f"/api/training-runs/{pending_run['id']}/rerun/")
    assert response.status_code == 409
    assert response.json() == {"error": "Only finished runs can be rerun; this one is pending"}


def test_a_rerun_is_a_new_run_number_with_the_same_name_and_no_scheduler_job(api, project, run_body):
    source = create_run(
        api, project, run_body, schedule_config={"schedule_type": "weekly", "scheduler_job_id": "jobs/recs-weekly"}
    )
    cancelled(api, source)
    response = api.post(f"/api/training-runs/{source['id']}/rerun/")
    assert response.status_code == 201, response.content
    rerun = response.json()
    assert (rerun["run_number"], rerun["name"], rerun["status"]) == (2, "recs", "pending")
    assert rerun["rerun_of"] == {
        "id": source["id"],
        "kind": "training",
        "run_number": 1,
        "name": "recs",
        "display_name": "recs #1",
    }
    assert rerun["config_diff"] == [] and rerun["from_stage"] == ""
    assert rerun["schedule_config"] == {
        "schedule_type": "weekly",
        "timezone": "UTC",
        "scheduler_job_id": None,
        "scheduled_for": None,
    }
    assert rerun["training_params"] == source["training_params"]
    assert rerun["registered_model"]["id"] == source["registered_model"]["id"]


def test_a_rerun_can_edit_the_copy_and_lists_what_changed(api, project, run_body, feature_config, dataset):
    source = cancelled(api, create_run(api, project, run_body))
    config = copy.deepcopy(feature_config["config"])
    config["buyer_tower"]["features"][0]["embedding_dim"] = 48
    wider = api.post(
        f"/api/projects/{project.id}/feature-configs/", {"name": "wider", "dataset_id": dataset["id"], "config": config}
    ).json()
    response = api.post(
        f"/api/training-runs/{source['id']}/rerun/",
        {
            "from_stage": "Transform",
            "feature_config_id": wider["id"],
            "training_params": {"epochs": 4, "batch_size": 64},
        },
    )
    assert response.status_code == 201, response.content
    rerun = response.json()
    assert rerun["from_stage"] == "Transform" and rerun["feature_config"]["name"] == "wider"
    assert rerun["total_epochs"] == 4 and rerun["training_params"] == {"epochs": 4, "batch_size": 64}
    assert rerun["config_diff"] == [
        {
            "field": "feature_config.buyer_tower.features",
            "before": feature_config["config"]["buyer_tower"]["features"],
            "after": wider["config"]["buyer_tower"]["features"],
        },
        {"field": "training_params.epochs", "before": 2, "after": 4},
    ]
    # the original is untouched
    assert api.get(f"/api/training-runs/{source['id']}/").json()["training_params"] == {"epochs": 2, "batch_size": 64}


def test_a_rerun_edit_is_validated_and_names_the_field(api, project, run_body, ranking):
    source = cancelled(api, create_run(api, project, run_body))
    url = f"/api/training-runs/{source['id']}/rerun/"
    assert errors_by_field(api.post(url, {"from_stage": "Deployer"})) == {
        "from_stage": "unknown stage 'Deployer'; one of Compile, ExampleGen, StatisticsGen, SchemaGen, Transform, "
        "Trainer, Evaluator, Pusher"
    }
    assert errors_by_field(api.post(url, {"training_params": {"epochs": 0}})) == {
        "training_params.epochs": "Input should be greater than or equal to 1"
    }
    refused = errors_by_field(api.post(url, {"model_config_id": ranking["id"], "dataset_id": 99999}))
    assert refused == {
        "model_config_id": "'ranker' is a ranking model config; this run trains a retrieval model",
        "dataset_id": "no dataset 99999 in this project",
    }
    assert api.get(runs_url(project)).json()["count"] == 1  # nothing was queued


# --------------------------------------------------------------------------- editing


def test_the_config_of_a_run_is_readable(api, pending_run):
    config = api.get(f"/api/training-runs/{pending_run['id']}/config/").json()
    assert config["editable"] is False and config["status"] == "pending"
    assert config["training_params"] == {"epochs": 2, "batch_size": 64}
    assert {"gpu_config", "evaluator_config", "schedule_config", "dataset_id"} <= set(config)


def test_a_queued_run_cannot_be_edited(api, pending_run):
    response = api.patch(f"/api/training-runs/{pending_run['id']}/config/", {"training_params": {"epochs": 5}})
    assert response.status_code == 409
    assert "cannot be edited" in response.json()["error"]


def test_editing_a_finished_run_is_validated_like_creating_one(api, pending_run):
    url = f"/api/training-runs/{cancelled(api, pending_run)['id']}/config/"
    response = api.patch(url, {"training_params": {"epochs": 0}})
    assert errors_by_field(response) == {"training_params.epochs": "Input should be greater than or equal to 1"}
    response = api.patch(url, {"gpu_config": {"gpu_type": "K80"}})
    assert response.status_code == 422 and set(errors_by_field(response)) == {"gpu_config.gpu_type"}
    response = api.patch(url, {"evaluator_config": {"thresholds": [{"metric": "mae", "value": 1}]}})
    assert errors_by_field(response) == {
        "evaluator_config.thresholds[0].metric": "mae needs a rating head; this is a retrieval model"
    }
    assert api.get(url).json()["training_params"] == {"epochs": 2, "batch_size": 64}  # nothing saved


def test_an_edit_is_saved_into_the_spec_and_used_by_the_next_rerun(api, pending_run):
    run_id = cancelled(api, pending_run)["id"]
    response = api.patch(
        f"/api/training-runs/{run_id}/config/",
        {
            "training_params": {"epochs": 7, "batch_size": 128},
            "schedule_config": {"schedule_type": "daily", "timezone": "Europe/Berlin"},
        },
    )
    assert response.status_code == 200, response.content
    config = response.json()
    assert config["updated_fields"] == ["schedule_config", "training_params"]
    assert config["schedule_config"] == {
        "schedule_type": "daily",
        "timezone": "Europe/Berlin",
        "scheduler_job_id": None,
        "scheduled_for": None,
    }
    assert config["gpu_config"] == pending_run["gpu_config"]  # untouched
    spec = TrainingRun.objects.get(pk=run_id).spec
    assert (spec["training"]["epochs"], spec["training"]["batch_size"]) == (7, 128)
    rerun = api.post(f"/api/training-runs/{run_id}/rerun/").json()
    assert (rerun["training_params"], rerun["total_epochs"]) == ({"epochs": 7, "batch_size": 128}, 7)


# --------------------------------------------------------------------------- outputs before there are any


def test_statistics_and_schema_are_404_until_produced(api, pending_run):
    response = api.get(f"/api/training-runs/{pending_run['id']}/statistics/")
    assert response.status_code == 404
    assert response.json() == {"error": "No statistics for this run: StatisticsGen has not completed yet (pending)"}
    response = api.get(f"/api/training-runs/{cancelled(api, pending_run)['id']}/schema/")
    assert response.json() == {
        "error": "No schema for this run: this run ended (cancelled) before SchemaGen produced it"
    }


def test_a_queued_run_has_empty_logs_and_no_metrics(api, pending_run):
    logs = api.get(f"/api/training-runs/{pending_run['id']}/logs/").json()
    assert [entry["stage"] for entry in logs["stages"]] == list(STAGES)
    assert not any(entry["available"] for entry in logs["stages"]) and not logs["worker"]["available"]
    metrics = api.get(f"/api/training-runs/{pending_run['id']}/metrics/").json()
    assert metrics["epochs"] == [] and metrics["total_epochs"] == 2


def test_a_failed_run_shows_its_error(api, pending_run):
    run = TrainingRun.objects.get(pk=pending_run["id"])
    run.transition(
        TrainingRun.FAILED,
        error_stage="Transform",
        error_message="vocabulary too large",
        error_traceback="Traceback ...",
    )
    detail = api.get(f"/api/training-runs/{run.pk}/").json()
    assert detail["error"] == {"message": "vocabulary too large", "stage": "Transform", "traceback": "Traceback ..."}
    assert api.get(runs_url(run.project)).json()["results"][0]["error_message"] == "vocabulary too large"


# --------------------------------------------------------------------------- registered model names


def test_check_name_says_whether_a_name_is_taken_and_by_which_type(api, project, pending_run):
    url = f"/api/projects/{project.id}/registered-models/check-name/"
    assert api.get(url + "?name=brand-new").json() == {
        "name": "brand-new",
        "available": True,
        "model_type": None,
        "registered_model_id": None,
        "has_schedule": False,
        "schedule_id": None,
    }
    taken = api.get(url + "?name=recs").json()
    assert (taken["available"], taken["model_type"]) == (False, "retrieval")
    assert taken["registered_model_id"] == pending_run["registered_model"]["id"]
    assert api.get(url).status_code == 422


# --------------------------------------------------------------------------- access


RUN_ENDPOINTS = [
    ("get", "/api/training-runs/{id}/"),
    ("post", "/api/training-runs/{id}/cancel/"),
    ("delete", "/api/training-runs/{id}/"),
    ("post", "/api/training-runs/{id}/rerun/"),
    ("get", "/api/training-runs/{id}/metrics/"),
    ("get", "/api/training-runs/{id}/logs/"),
    ("get", "/api/training-runs/{id}/statistics/"),
    ("get", "/api/training-runs/{id}/schema/"),
    ("get", "/api/training-runs/{id}/config/"),
    ("patch", "/api/training-runs/{id}/config/"),
]


def test_outsiders_get_404_for_every_run_endpoint(project, pending_run, run_body, oscar, oscars_project):
    outsider = api_client_for(oscar)
    for method, path in RUN_ENDPOINTS:
        send = getattr(outsider, method)
        response = send(path.format(id=pending_run["id"]), **({"data": {}} if method == "patch" else {}))
        assert response.status_code == 404, f"{method} {path}: {response.status_code}"
        assert response.json() == {"error": "No such training run"}
    assert outsider.get(runs_url(project)).status_code == 404
    assert outsider.post(runs_url(project), run_body).status_code == 404
    assert outsider.get(f"/api/projects/{project.id}/registered-models/check-name/?name=recs").status_code == 404
    assert TrainingRun.objects.get(pk=pending_run["id"]).status == "pending"
    assert api_client_for(oscar).get(runs_url(oscars_project)).json()["count"] == 0


def test_project_members_see_the_runs(project, pending_run, mark):
    member = api_client_for(mark)
    assert member.get(f"/api/training-runs/{pending_run['id']}/").status_code == 200
    assert member.get(runs_url(project)).json()["count"] == 1


# --------------------------------------------------------------------------- one real, finished run
# (``finished``: tests/control/conftest.py)


def test_a_finished_run_shows_stages_outcome_and_lineage(finished):
    detail = finished.api.get(f"/api/training-runs/{finished.run.pk}/").json()
    assert detail["status"] == "completed" and detail["blessed"] is True and detail["blessing_reasons"]
    assert [(s["name"], s["status"]) for s in detail["stages"]] == [(s, "completed") for s in STAGES]
    assert all(s["started_at"] and s["ended_at"] and s["summary"] for s in detail["stages"])
    assert detail["current_epoch"] == detail["total_epochs"] == 2
    assert detail["final_metrics"]["recall_at_100"] > 0
    assert [a["stage"] for a in detail["artifacts"]] == list(STAGES)
    trainer = next(a for a in detail["artifacts"] if a["stage"] == "Trainer")
    assert trainer["producer"] == "Trainer" and set(trainer["inputs"]) == {"ExampleGen", "Transform"}
    assert trainer["uri"].startswith(str(services.run_folder(finished.run)))
    assert detail["duration_seconds"] > 0 and detail["cost_usd"] == 0 and detail["error"] is None
    assert detail["resources"]["rss_mb"] > 0
    card = finished.api.get(runs_url(finished.project)).json()["results"][0]
    assert card["recall_at_100"] == detail["final_metrics"]["recall_at_100"]
    assert card["stages"] == {s: "completed" for s in STAGES} and card["duration_seconds"] > 0


def test_every_metric_says_which_split_it_was_measured_on(finished):
    detail = finished.api.get(f"/api/training-runs/{finished.run.pk}/").json()
    metrics, splits = detail["final_metrics"], detail["metric_splits"]
    # the Evaluator's on its held-out split (this run has no test rows: eval), the Trainer's (at the exported
    # epoch) on eval, the training loss on train
    held_out = metrics["holdout"]
    assert (splits["recall_at_100"], splits["popularity_recall_at_100"], splits["eval_recall_at_100"]) == (
        held_out,
        held_out,
        "eval",
    )
    assert (splits["loss"], splits["val_loss"]) == ("train", "eval")
    assert metrics["eval_recall_at_100"] == finished.run.final_metrics["eval_recall_at_100"]
    assert set(splits) <= set(metrics) and "epochs_run" not in splits
    assert detail["advice"] is None  # a training run's verdict is its blessing
    epochs = finished.api.get(f"/api/training-runs/{finished.run.pk}/metrics/").json()
    assert epochs["metric_splits"]["loss"] == "train"
    assert {split for name, split in epochs["metric_splits"].items() if name != "loss"} == {"eval"}


def test_metrics_have_a_row_per_epoch_and_histograms_only_on_request(finished):
    url = f"/api/training-runs/{finished.run.pk}/metrics/"
    metrics = finished.api.get(url).json()
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    last = metrics["epochs"][-1]
    assert last["loss"] is not None and last["recall_at_100"] is not None and last["resources"]["rss_mb"] > 0
    assert "histograms" not in last
    with_histograms = finished.api.get(url + "?histograms=true").json()["epochs"]
    assert all("histograms" in row for row in with_histograms)


def test_logs_hold_every_stage_log_and_the_worker_log(finished):
    url = f"/api/training-runs/{finished.run.pk}/logs/"
    logs = finished.api.get(url).json()
    assert [entry["stage"] for entry in logs["stages"]] == list(STAGES)
    assert [(entry["stage"], entry["available"]) for entry in logs["stages"]] == [(s, True) for s in STAGES]
    texts = {entry["stage"]: entry["text"] for entry in logs["stages"]}
    assert "compiled" in texts["Compile"] and texts["Trainer"] and texts["Evaluator"]
    assert logs["worker"]["available"]
    trainer = finished.api.get(url + "?stage=Trainer&tail=1").json()
    assert [entry["stage"] for entry in trainer["stages"]] == ["Trainer"] and "worker" not in trainer
    assert len(trainer["stages"][0]["text"].splitlines()) == 1 and trainer["stages"][0]["truncated"]
    worker_only = finished.api.get(url + "?stage=worker").json()
    assert worker_only["stages"] == [] and "worker" in worker_only
    response = finished.api.get(url + "?stage=Training")
    assert response.status_code == 422 and set(errors_by_field(response)) == {"stage"}


def test_statistics_are_the_statistics_gen_summary(finished):
    answer = finished.api.get(f"/api/training-runs/{finished.run.pk}/statistics/").json()
    summary, overview = answer["summary"], answer["overview"]
    assert {"train", "eval"} <= set(summary["splits"])
    assert overview["total_examples"] == sum(s["num_examples"] for s in summary["splits"].values()) > 0
    assert overview["split"] == "train" and overview["num_features"] == len(summary["features"])
    assert overview["numeric_features"] >= 2 and overview["categorical_features"] >= 4
    buyer = summary["splits"]["train"]["columns"]["buyer_id"]
    assert buyer["type"] == "string" and buyer["unique"] > 10 and buyer["top"]
    assert answer["report_url"] == f"/training/runs/{finished.run.pk}/statistics/"


def test_the_schema_is_the_schema_gen_schema_with_its_anomalies(finished):
    answer = finished.api.get(f"/api/training-runs/{finished.run.pk}/schema/").json()
    names = [f["name"] for f in answer["schema"]["feature"]]
    assert "buyer_id" in names and "product_id" in names
    table = {f["name"]: f for f in answer["features"]}
    assert table["buyer_id"]["type"] == "BYTES" and table["buyer_id"]["required"] is True
    assert table["price"]["type"] == "FLOAT"
    assert all({"feature", "kind", "severity", "description"} <= set(a) for a in answer["anomalies"])
    # The run's data has one planted anomaly (tests.helpers.plant_an_anomaly): an eval price beyond train's.
    [planted] = [a for a in answer["anomalies"] if a["feature"] == "price"]
    assert (planted["kind"], planted["severity"]) == ("out_of_range", "info")
    assert "1 eval value of 'price'" in planted["description"]


def test_deleting_is_refused_to_outsiders_even_for_a_finished_run(finished, oscar):
    response = api_client_for(oscar).delete(f"/api/training-runs/{finished.run.pk}/")
    assert response.status_code == 404
    assert services.run_folder(finished.run).is_dir()


def test_statistics_are_readable_while_the_run_is_still_going(finished):
    """Before the run ends its lineage is not recorded yet; the runner's record in the run folder is."""
    stages = {s: {"status": "completed" if s in STAGES[:3] else "pending"} for s in STAGES}
    (going,) = copies(
        finished.run.pk, 1, status=TrainingRun.RUNNING, artifacts={}, stages=stages, current_stage="SchemaGen"
    )
    statistics = finished.api.get(f"/api/training-runs/{going.pk}/statistics/")
    assert statistics.status_code == 200, statistics.content
    assert statistics.json()["overview"]["total_examples"] > 0
    schema = finished.api.get(f"/api/training-runs/{going.pk}/schema/")
    assert schema.json() == {"error": "No schema for this run: SchemaGen has not completed yet (pending)"}
