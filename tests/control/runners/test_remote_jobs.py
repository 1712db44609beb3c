"""A remote run's job: submitted by the worker, followed by webhooks and by polling, cancelled at its service."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.template.loader import render_to_string

from ml_pipeline.kfp.compiler import load_ir
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.spec import STAGES, PipelineSpec, StageStatus
from ml_platform.runners import clients
from ml_platform.runners.models import JobState, RemoteJob
from ml_platform.training.artifact_files import run_files
from ml_platform.training.models import TrainingRun
from ml_platform.training.presenters import remote_job_of
from ml_platform.training.worker import Worker
from tests.helpers import cancelled, create_run, post_webhook


@pytest.fixture
def vertex_run(vertex_configured, api, project, run_body):
    """A run for Vertex AI, created through the API (pending, its job queued)."""
    return create_run(api, project, run_body, runner="vertex")


@pytest.fixture
def submitted(vertex_run, pipelines):
    """The run once the worker has submitted it to the fake service."""
    Worker().step()
    return TrainingRun.objects.get(pk=vertex_run["id"])


def detail(api, run) -> dict:
    return api.get(f"/api/training-runs/{run.pk}/").json()


def test_the_worker_submits_the_compiled_spec_with_the_runs_secret_as_its_only_runtime_parameter(submitted, pipelines):
    [call] = pipelines.of("submit")
    assert call["parameters"] == {"webhook_secret": submitted.webhook_secret}
    assert call["pipeline_root"] == "gs://acme-staging/pipelines"
    assert call["job_id"].startswith(f"mlp-{submitted.pk}-run-")
    assert call["labels"] == {"ml-platform-run": str(submitted.pk), "ml-platform-project": str(submitted.project_id)}
    assert submitted.webhook_secret not in call["ir"]
    assert submitted.status == TrainingRun.SUBMITTING


def test_the_submitted_spec_caches_on_the_local_fingerprints_and_pushes_under_the_remote_root(submitted, pipelines):
    ir, _ = load_ir(pipelines.of("submit")[0]["ir"])
    spec = PipelineSpec.model_validate(json.loads(ir["root"]["inputDefinitions"]["parameters"]["spec"]["defaultValue"]))
    assert spec.push.destination.startswith("/gcs/acme-staging/pipelines/artifacts/pushed/")
    prints = PipelineRunner(spec, "/tmp/unused-root", run_id=submitted.pipeline_run_id).fingerprints()
    for stage, task in ir["root"]["dag"]["tasks"].items():
        assert task["cachingOptions"]["cacheKey"] == prints[task["taskInfo"]["name"]], stage


def test_the_job_name_and_console_url_are_kept_on_the_run(api, submitted):
    job = detail(api, submitted)["remote_job"]
    assert job["resource_name"].endswith(f"/pipelineJobs/mlp-{submitted.pk}-{submitted.pipeline_run_id}")
    assert job["console_url"].startswith("https://console.cloud.google.com/vertex-ai/pipelines/runs/")
    assert job["state"] == JobState.PENDING


def test_a_submission_the_service_refuses_fails_the_run_with_its_answer(vertex_run, pipelines):
    pipelines.fail_submit = PermissionError("403 Permission 'aiplatform.pipelineJobs.create' denied")
    Worker().step()
    run = TrainingRun.objects.get(pk=vertex_run["id"])
    assert run.status == TrainingRun.FAILED
    assert run.error_message.startswith("could not submit to vertex: PermissionError: 403 Permission")
    assert run.remote_job.state == JobState.FAILED


def test_the_runners_first_webhook_makes_the_submitted_run_running(submitted):
    response = post_webhook(submitted, "stage-started", {"event": "stage_started", "stage": "Compile"})
    assert response.json() == {"status": "running"}


def test_a_job_that_succeeded_without_its_last_reports_ends_its_run_with_the_tasks_states(
    submitted, pipelines, settings
):
    settings.REMOTE_POLL_SECONDS = 0
    tasks = {"Compile": StageStatus.CACHED, "ExampleGen": StageStatus.CACHED, "Trainer": StageStatus.COMPLETED}
    pipelines.status_answer = clients.JobStatus(JobState.SUCCEEDED, "PIPELINE_STATE_SUCCEEDED", tasks)
    Worker().step()
    run = TrainingRun.objects.get(pk=submitted.pk)
    assert run.status == TrainingRun.COMPLETED
    assert run.stages["Compile"]["status"] == StageStatus.CACHED
    assert run.stages["Trainer"]["status"] == StageStatus.COMPLETED
    assert pipelines.of("status") == [{"resource_name": run.remote_job.resource_name}]


def test_a_job_that_failed_fails_its_run_at_the_failed_task_with_the_services_message(submitted, pipelines, settings):
    settings.REMOTE_POLL_SECONDS = 0
    tasks = {"Compile": StageStatus.COMPLETED, "ExampleGen": StageStatus.FAILED}
    pipelines.status_answer = clients.JobStatus(
        JobState.FAILED, "PIPELINE_STATE_FAILED", tasks, "The DAG failed because some tasks failed."
    )
    Worker().step()
    run = TrainingRun.objects.get(pk=submitted.pk)
    assert (run.status, run.error_stage) == (TrainingRun.FAILED, "ExampleGen")
    assert run.error_message == "The DAG failed because some tasks failed."
    assert run.stages["Trainer"]["status"] == StageStatus.INTERRUPTED  # nothing shown waiting for an ended job


def test_a_running_job_moves_stages_forward_but_never_back(submitted, pipelines, settings):
    settings.REMOTE_POLL_SECONDS = 0
    post_webhook(submitted, "stage-started", {"event": "stage_started", "stage": "Compile"})
    post_webhook(submitted, "stage-complete", {"event": "stage_completed", "stage": "Compile"})
    tasks = {"Compile": StageStatus.RUNNING, "ExampleGen": StageStatus.RUNNING}  # the service lags behind
    pipelines.status_answer = clients.JobStatus(JobState.RUNNING, "PIPELINE_STATE_RUNNING", tasks)
    Worker().step()
    run = TrainingRun.objects.get(pk=submitted.pk)
    assert run.status == TrainingRun.RUNNING
    assert run.stages["Compile"]["status"] == StageStatus.COMPLETED
    assert run.stages["ExampleGen"]["status"] == StageStatus.RUNNING


def test_jobs_are_read_only_every_remote_poll_seconds(submitted, pipelines, settings):
    settings.REMOTE_POLL_SECONDS = 3600
    Worker().step()  # submitted just now: not read within the hour
    assert pipelines.of("status") == []
    settings.REMOTE_POLL_SECONDS = 0
    Worker().step()
    assert len(pipelines.of("status")) == 1


def test_cancelling_a_remote_run_cancels_its_job(api, submitted, pipelines):
    run = cancelled(api, {"id": submitted.pk})
    assert run["status"] == "cancelled"
    assert pipelines.of("cancel") == [{"resource_name": submitted.remote_job.resource_name}]
    assert RemoteJob.objects.get(run=submitted).cancel_sent


def test_a_cancel_the_service_did_not_take_is_sent_again_by_the_worker(api, submitted, pipelines):
    pipelines.fail_cancel = ConnectionError("service unavailable")
    cancelled(api, {"id": submitted.pk})
    pipelines.fail_cancel = None
    Worker().step()
    assert len(pipelines.of("cancel")) == 2
    assert RemoteJob.objects.get(run=submitted).cancel_sent


def test_a_run_cancelled_before_submission_is_never_submitted(api, vertex_run, pipelines):
    cancelled(api, vertex_run)
    Worker().step()
    assert pipelines.of("submit") == []
    assert RemoteJob.objects.get(run_id=vertex_run["id"]).state == JobState.CANCELLED


def test_each_gpu_shape_the_trainer_tried_is_recorded_on_the_run(api, submitted):
    machine = {"machine_type": "n1-standard-32", "accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 4}
    attempt = {
        "event": "compute_attempt",
        "stage": "Trainer",
        "shape": {"machine_spec": machine, "replica_count": 1},
        "region": "europe-west4",
        "outcome": "unavailable",
        "error": "ResourceExhausted: 429 The zone does not have enough resources",
    }
    assert post_webhook(submitted, "attempt", attempt).status_code == 200
    later = {**attempt, "outcome": "succeeded", "error": "", "job": "projects/acme/locations/europe-west4/customJobs/9"}
    later["shape"] = {"machine_spec": {**machine, "accelerator_type": "NVIDIA_TESLA_V100"}, "replica_count": 1}
    post_webhook(submitted, "attempt", later)
    attempts = detail(api, submitted)["remote_job"]["trainer_attempts"]
    assert [(a["shape"]["machine_spec"]["accelerator_type"], a["outcome"]) for a in attempts] == [
        ("NVIDIA_TESLA_T4", "unavailable"),
        ("NVIDIA_TESLA_V100", "succeeded"),
    ]
    assert "enough resources" in attempts[0]["error"]


def test_the_pages_partial_shows_the_job_its_console_link_and_the_attempts(api, submitted):
    attempt = {
        "event": "compute_attempt",
        "stage": "Trainer",
        "shape": {
            "machine_spec": {"machine_type": "n1-standard-32", "accelerator_type": "<T4>", "accelerator_count": 4}
        },
        "region": "europe-west4",
        "outcome": "unavailable",
        "error": "stockout",
    }
    assert post_webhook(submitted, "attempt", attempt).status_code == 200
    submitted.refresh_from_db()
    html = render_to_string("runners/_remote_job.html", {"remote_job": remote_job_of(submitted)})
    assert submitted.remote_job.resource_name in html
    assert f'href="{submitted.remote_job.console_url}"' in html
    assert "4× &lt;T4&gt; on n1-standard-32" in html and "stockout" in html  # escaped


def test_a_submission_a_stopped_worker_left_unfinished_fails_its_run(time_travel, vertex_run, pipelines):
    run = TrainingRun.objects.get(pk=vertex_run["id"])
    run.transition(TrainingRun.SUBMITTING)  # the worker stopped here, before the service answered
    time_travel.shift(timedelta(minutes=11))
    Worker().step()
    run.refresh_from_db()
    assert run.status == TrainingRun.FAILED
    assert run.error_message == "the submission to vertex was interrupted"
    assert pipelines.of("submit") == []


def test_a_rerun_goes_to_the_runner_its_original_went_to(api, submitted):
    cancelled(api, {"id": submitted.pk})
    response = api.post(f"/api/training-runs/{submitted.pk}/rerun/", {})
    assert response.status_code == 201, response.content
    assert response.json()["remote_job"]["backend"] == "vertex"


def test_compile_run_prints_what_submitting_would_send(vertex_configured, pending_run):
    out = StringIO()
    call_command("compile_run", pending_run["id"], "--runner", "vertex", stdout=out)
    ir, _ = load_ir(out.getvalue())
    assert sorted(task["taskInfo"]["name"] for task in ir["root"]["dag"]["tasks"].values()) == sorted(STAGES)
    assert ir["defaultPipelineRoot"] == "gs://acme-staging/pipelines"


def test_a_remote_runs_compiled_spec_is_kept_in_a_non_local_store(
    settings, vertex_configured, pipelines, api, project, run_body
):
    settings.PIPELINE_ROOT = f"memory://pipelines-{uuid.uuid4().hex[:8]}"
    created = create_run(api, project, run_body, runner="vertex")
    Worker().step()
    run = TrainingRun.objects.get(pk=created["id"])
    [call] = pipelines.of("submit")
    assert (run_files(run) / "pipeline.yaml").read_text() == call["ir"]
    assert not call["ir_path"].startswith("memory")  # the clients open a local copy
