"""Fixtures of the remote-runner tests: the settings a runner needs, and a fake pipeline service that records
every call (the interface ml_platform.runners.clients' adapters give Vertex AI Pipelines and Kubeflow)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ml_platform.runners import clients
from ml_platform.runners.models import JobState

VERTEX_SETTINGS = {
    "CLOUD_PROJECT_ID": "acme-recs",
    "CLOUD_DATA_REGION": "europe-central2",
    "CLOUD_GPU_TRAINING_REGION": "europe-west4",
    "CLOUD_STAGING_BUCKET": "gs://acme-staging",
    "CLOUD_SERVICE_ACCOUNT": "pipelines@acme-recs.iam.gserviceaccount.com",
    "PIPELINE_IMAGE": "europe-docker.pkg.dev/acme/ml/pipeline:1.0",
    "PIPELINE_GPU_IMAGE": "europe-docker.pkg.dev/acme/ml/pipeline-gpu:1.0",
    "PLATFORM_URL": "https://ml.acme.example",
}
KUBEFLOW_SETTINGS = {
    "KUBEFLOW_HOST": "https://kfp.acme.example",
    "KUBEFLOW_TOKEN": "kfp-token",
    "KUBEFLOW_PIPELINE_ROOT": "minio://mlpipeline/v2",
    "REMOTE_ARTIFACT_ROOT": "/mnt/artifacts",
    "PIPELINE_IMAGE": "registry.acme.example/ml/pipeline:1.0",
    "PLATFORM_URL": "https://ml.acme.example",
}


@pytest.fixture
def vertex_configured(settings):
    for name, value in VERTEX_SETTINGS.items():
        setattr(settings, name, value)
    return settings


@pytest.fixture
def kubeflow_configured(settings):
    for name, value in KUBEFLOW_SETTINGS.items():
        setattr(settings, name, value)
    return settings


@dataclass
class FakePipelines:
    """One pipeline service: submissions, status reads and cancels recorded; answers set by the test."""

    backend: str
    calls: list[tuple[str, dict]] = field(default_factory=list)
    status_answer: clients.JobStatus = field(
        default_factory=lambda: clients.JobStatus(JobState.RUNNING, "PIPELINE_STATE_RUNNING")
    )
    fail_submit: Exception | None = None
    fail_cancel: Exception | None = None

    def submit(self, **call) -> clients.Submitted:
        with open(call["ir_path"]) as ir:
            call["ir"] = ir.read()
        self.calls.append(("submit", call))
        if self.fail_submit:
            raise self.fail_submit
        name = f"projects/acme-recs/locations/europe-central2/pipelineJobs/{call['job_id']}"
        return clients.Submitted(name, f"https://console.cloud.google.com/vertex-ai/pipelines/runs/{call['job_id']}")

    def status(self, resource_name: str) -> clients.JobStatus:
        self.calls.append(("status", {"resource_name": resource_name}))
        return self.status_answer

    def cancel(self, resource_name: str) -> None:
        self.calls.append(("cancel", {"resource_name": resource_name}))
        if self.fail_cancel:
            raise self.fail_cancel

    def of(self, kind: str) -> list[dict]:
        return [call for name, call in self.calls if name == kind]


@pytest.fixture
def pipelines(monkeypatch):
    """The fake service behind both backends (what clients.client_for returns)."""
    fake = FakePipelines("vertex")
    monkeypatch.setattr(clients, "FACTORIES", {"vertex": lambda: fake, "kubeflow": lambda: fake})
    return fake
