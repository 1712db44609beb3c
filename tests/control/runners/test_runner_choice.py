"""Which runner a run goes to: the project's (local by default), or the run's own; refused when not configured."""

from __future__ import annotations

from ml_platform.audit.models import AuditEvent
from ml_platform.runners.models import JobState, ProjectRunner, RemoteJob
from ml_platform.training.models import TrainingRun
from tests.helpers import api_client_for, create_run, errors_by_field, runs_url


def runner_url(project) -> str:
    return f"/api/projects/{project.id}/runner/"


def test_runs_are_local_unless_the_project_or_the_run_says_otherwise(api, project, run_body):
    run = create_run(api, project, run_body)
    assert run["runner"] == "local" and run["remote_job"] is None
    assert not RemoteJob.objects.exists()


def test_a_remote_runner_without_its_settings_is_refused_naming_them(api, project, run_body):
    response = api.post(runs_url(project), {**run_body, "runner": "vertex"})
    message = errors_by_field(response, 422)["runner"]
    assert "the vertex runner is not configured: set CLOUD_PROJECT_ID, CLOUD_DATA_REGION" in message
    assert "CLOUD_SERVICE_ACCOUNT" in message and "PLATFORM_URL" in message
    assert not TrainingRun.objects.exists()


def test_kubeflow_names_its_own_missing_settings(api, project, run_body, settings):
    settings.KUBEFLOW_HOST = "https://kfp.acme.example"
    message = errors_by_field(api.post(runs_url(project), {**run_body, "runner": "kubeflow"}), 422)["runner"]
    assert message == (
        "the kubeflow runner is not configured: set KUBEFLOW_PIPELINE_ROOT, REMOTE_ARTIFACT_ROOT, PIPELINE_IMAGE, "
        "PLATFORM_URL"
    )


def test_a_run_for_vertex_is_queued_for_submission_and_never_claimed_by_the_local_worker(
    vertex_configured, api, project, run_body
):
    run = create_run(api, project, run_body, runner="vertex")
    assert run["status"] == "pending" and run["runner"] == "remote"
    assert run["remote_job"]["backend"] == "vertex" and run["remote_job"]["state"] == JobState.QUEUED
    assert TrainingRun.objects.get(pk=run["id"]).remote_job.backend == "vertex"


def test_a_gpu_type_the_training_region_lacks_is_refused_naming_the_regions_that_have_it(
    vertex_configured, api, project, run_body
):
    vertex_configured.CLOUD_GPU_TRAINING_REGION = "europe-central2"
    response = api.post(
        runs_url(project), {**run_body, "runner": "vertex", "gpu_config": {"gpu_type": "L4", "gpu_count": 2}}
    )
    message = errors_by_field(response, 422)["gpu_config.gpu_type"]
    assert "L4 GPUs are not available for training in europe-central2" in message
    assert "europe-west4" in message


def test_a_gpu_count_no_machine_carries_is_refused(vertex_configured, api, project, run_body):
    response = api.post(
        runs_url(project), {**run_body, "runner": "vertex", "gpu_config": {"gpu_type": "T4", "gpu_count": 3}}
    )
    assert errors_by_field(response, 422)["gpu_config.gpu_count"] == "T4 GPUs come 1, 2, 4 to a machine, not 3"


def test_a_bad_fallback_order_is_refused_naming_the_entry(vertex_configured, api, project, run_body):
    gpu = {"gpu_type": "T4", "gpu_count": 2, "fallback": ["4xT4", "four V100"]}
    response = api.post(runs_url(project), {**run_body, "runner": "vertex", "gpu_config": gpu})
    assert "'four V100' is not <count>x<GPU type>" in errors_by_field(response, 422)["gpu_config.fallback"]


def test_the_projects_runner_lists_what_is_configured_and_the_gpus_of_the_training_region(
    vertex_configured, api, project
):
    answer = api.get(runner_url(project)).json()
    assert answer["runner"] == "local"
    assert answer["configured"] == ["local", "vertex"]
    assert "KUBEFLOW_HOST" in answer["missing"]["kubeflow"]
    assert answer["gpu_training_region"] == "europe-west4"
    assert answer["gpu_choices"] == {"T4": [1, 2, 4], "V100": [1, 2, 4, 8], "L4": [1, 2, 4, 8], "A100": [1, 2, 4, 8]}


def test_an_owner_sets_the_projects_runner_and_its_runs_go_there(vertex_configured, api, project, run_body):
    response = api.put(runner_url(project), {"runner": "vertex"})
    assert response.status_code == 200, response.content
    assert ProjectRunner.objects.get(project=project).runner == "vertex"
    event = AuditEvent.objects.filter(action="update", object_id=project.id).latest("created_at")
    assert event.changes == {"runner": {"before": "local", "after": "vertex"}}
    assert create_run(api, project, run_body)["remote_job"]["backend"] == "vertex"
    assert create_run(api, project, run_body, runner="local")["remote_job"] is None  # a run overrides it


def test_a_runner_this_installation_lacks_cannot_be_the_projects(api, project):
    response = api.put(runner_url(project), {"runner": "kubeflow"})
    assert "KUBEFLOW_HOST" in errors_by_field(response, 422)["runner"]
    assert not ProjectRunner.objects.exists()


def test_outsiders_see_no_projects_runner(vertex_configured, project, oscar):
    assert api_client_for(oscar).get(runner_url(project)).status_code == 404


def test_an_experiment_can_go_to_a_remote_runner_too(vertex_configured, api, project, run_body):
    body = {key: run_body[key] for key in ("dataset_id", "feature_config_id", "model_config_id")}
    response = api.post(f"/api/projects/{project.id}/experiments/", {**body, "runner": "vertex"})
    assert response.status_code == 201, response.content
    assert response.json()["remote_job"]["backend"] == "vertex"
