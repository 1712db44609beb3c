"""A remote run's page in a real headless Chromium: its Vertex AI job, console link and the Trainer's GPU attempts."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from ml_platform.runners.models import JobState, RemoteJob
from ml_platform.training.models import TrainingRun

pytestmark = pytest.mark.browser

JOB = "projects/acme-recs/locations/europe-central2/pipelineJobs/mlp-1-run-1-5f0c2a9e"
CONSOLE = "https://console.cloud.google.com/vertex-ai/locations/europe-central2/pipelines/runs/mlp-1-run-1-5f0c2a9e"


def attempt(accelerator: str, machine: str, outcome: str, error: str = "") -> dict:
    spec = {"machine_type": machine, "accelerator_type": accelerator, "accelerator_count": 4}
    return {
        "shape": {"machine_spec": spec, "replica_count": 1},
        "region": "europe-west4",
        "outcome": outcome,
        "error": error,
    }


@pytest.fixture
def remote_run(pending_run):
    """The pending run, as a Vertex AI job that got its GPUs on the second shape it tried."""
    run = TrainingRun.objects.get(pk=pending_run["id"])
    stages = {**run.stages, "Trainer": {**run.stages["Trainer"], "status": "running"}}
    stages["Trainer"]["attempts"] = [
        attempt(
            "NVIDIA_TESLA_T4",
            "n1-standard-32",
            "unavailable",
            "ResourceExhausted: 429 The zone 'europe-west4-a' "
            "does not have enough resources available to fulfill the request. Try a different zone.",
        ),
        attempt("NVIDIA_TESLA_V100", "n1-standard-16", "succeeded"),
    ]
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.RUNNING, runner=TrainingRun.REMOTE, stages=stages)
    RemoteJob.objects.create(
        run=run,
        backend="vertex",
        state=JobState.RUNNING,
        service_state="PIPELINE_STATE_RUNNING",
        resource_name=JOB,
        console_url=CONSOLE,
    )
    return run


def test_the_run_page_shows_its_job_the_console_link_and_the_gpu_attempts(
    logged_in_page, olivia, remote_run, screenshots
):
    page = logged_in_page(olivia)
    page.goto(f"/training/runs/{remote_run.pk}/")
    job = page.locator("#remote-job")
    expect(job.locator("h2")).to_have_text("Vertex AI Pipelines job")
    expect(job.locator("code")).to_have_text(JOB)
    expect(job.get_by_role("link", name="open in the console")).to_have_attribute("href", CONSOLE)
    rows = page.locator("#trainer-attempts tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("4× NVIDIA_TESLA_T4 on n1-standard-32")
    expect(rows.nth(0)).to_contain_text("unavailable")
    expect(rows.nth(1)).to_contain_text("succeeded")
    job.scroll_into_view_if_needed()
    screenshots("remote-job")
