"""The adapters over google-cloud-aiplatform's PipelineJob and kfp.Client, against fakes of those interfaces
that record every call: what is sent to each service, and how its answers read."""

from __future__ import annotations

from types import SimpleNamespace

import kfp
import pytest
from google.cloud import aiplatform

from ml_pipeline.spec import StageStatus
from ml_platform.runners.clients import KubeflowPipelines, VertexPipelines
from ml_platform.runners.models import JobState

CALLS: list[tuple] = []


class FakePipelineJob:
    """aiplatform.PipelineJob as the adapter uses it."""

    answer = None  # what get() returns

    def __init__(self, **kwargs):
        CALLS.append(("PipelineJob", kwargs))
        self.resource_name = f"projects/acme-recs/locations/{kwargs['location']}/pipelineJobs/{kwargs['job_id']}"

    def submit(self, **kwargs):
        CALLS.append(("submit", kwargs))

    def _dashboard_uri(self):
        return f"https://console.cloud.google.com/vertex-ai/locations/europe-central2/pipelines/runs/{self.resource_name.rsplit('/', 1)[1]}"

    @classmethod
    def get(cls, resource_name, project=None, location=None):
        CALLS.append(("get", {"resource_name": resource_name, "project": project, "location": location}))
        return cls.answer

    def cancel(self):
        CALLS.append(("cancel", {}))


class FakeKfpClient:
    answer = None

    def __init__(self, **kwargs):
        CALLS.append(("Client", kwargs))

    def create_run_from_pipeline_package(self, pipeline_file, **kwargs):
        CALLS.append(("create_run", {"pipeline_file": pipeline_file, **kwargs}))
        return SimpleNamespace(run_id="6f1c-run")

    def get_run(self, run_id):
        CALLS.append(("get_run", {"run_id": run_id}))
        return self.answer

    def terminate_run(self, run_id):
        CALLS.append(("terminate_run", {"run_id": run_id}))
        return {}


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    CALLS.clear()
    monkeypatch.setattr(aiplatform, "PipelineJob", FakePipelineJob)
    monkeypatch.setattr(kfp, "Client", FakeKfpClient)


def submit(client):
    return client.submit(
        ir_path="/data/runs/run-1/pipeline.yaml",
        display_name="recs #1",
        job_id="mlp-1-run-1",
        parameters={"webhook_secret": "s3cret"},
        pipeline_root="gs://acme-staging/pipelines",
        labels={"ml-platform-run": "1", "ml-platform-project": "4"},
    )


def test_vertex_submits_a_pipeline_job_in_the_data_region_as_the_service_account(vertex_configured):
    submitted = submit(VertexPipelines())
    [(_, job), (_, submit_call)] = CALLS
    assert job == {
        "display_name": "recs #1",
        "template_path": "/data/runs/run-1/pipeline.yaml",
        "job_id": "mlp-1-run-1",
        "pipeline_root": "gs://acme-staging/pipelines",
        "parameter_values": {"webhook_secret": "s3cret"},
        "enable_caching": True,
        "labels": {"ml-platform-run": "1", "ml-platform-project": "4"},
        "project": "acme-recs",
        "location": "europe-central2",
    }
    assert submit_call == {"service_account": "pipelines@acme-recs.iam.gserviceaccount.com"}
    assert submitted.resource_name == "projects/acme-recs/locations/europe-central2/pipelineJobs/mlp-1-run-1"
    assert submitted.console_url.endswith("/pipelines/runs/mlp-1-run-1")


def test_vertex_job_and_task_states_read_in_the_platforms_words(vertex_configured):
    task = lambda name, state: SimpleNamespace(task_name=name, state=SimpleNamespace(name=state))  # noqa: E731
    FakePipelineJob.answer = SimpleNamespace(
        state=SimpleNamespace(name="PIPELINE_STATE_FAILED"),
        task_details=[task("compile", "SKIPPED"), task("trainer", "FAILED"), task("pusher", "NOT_TRIGGERED")],
        gca_resource=SimpleNamespace(error=SimpleNamespace(message="The DAG failed because some tasks failed.")),
    )
    status = VertexPipelines().status("projects/acme-recs/locations/europe-central2/pipelineJobs/mlp-1-run-1")
    assert (status.state, status.service_state) == (JobState.FAILED, "PIPELINE_STATE_FAILED")
    assert status.tasks == {"Compile": StageStatus.CACHED, "Trainer": StageStatus.FAILED}
    assert status.error == "The DAG failed because some tasks failed."


def test_vertex_cancel_cancels_that_job(vertex_configured):
    FakePipelineJob.answer = FakePipelineJob(location="europe-central2", job_id="mlp-1-run-1")
    CALLS.clear()
    VertexPipelines().cancel("projects/acme-recs/locations/europe-central2/pipelineJobs/mlp-1-run-1")
    assert CALLS == [
        (
            "get",
            {
                "resource_name": "projects/acme-recs/locations/europe-central2/pipelineJobs/mlp-1-run-1",
                "project": "acme-recs",
                "location": "europe-central2",
            },
        ),
        ("cancel", {}),
    ]


def test_kubeflow_creates_a_run_from_the_compiled_package_on_the_configured_host(kubeflow_configured):
    submitted = submit(KubeflowPipelines())
    [(_, client), (_, run)] = CALLS
    assert client == {"host": "https://kfp.acme.example", "existing_token": "kfp-token"}
    assert run == {
        "pipeline_file": "/data/runs/run-1/pipeline.yaml",
        "arguments": {"webhook_secret": "s3cret"},
        "run_name": "recs #1",
        "experiment_name": "4",
        "pipeline_root": "gs://acme-staging/pipelines",
        "enable_caching": True,
    }
    assert submitted.resource_name == "6f1c-run"
    assert submitted.console_url == "https://kfp.acme.example/#/runs/details/6f1c-run"


def test_kubeflow_run_and_task_states_read_in_the_platforms_words(kubeflow_configured):
    FakeKfpClient.answer = SimpleNamespace(
        state="SUCCEEDED",
        error=None,
        run_details=SimpleNamespace(
            task_details=[
                SimpleNamespace(display_name="ExampleGen", state="SKIPPED"),
                SimpleNamespace(display_name="Trainer", state="SUCCEEDED"),
                SimpleNamespace(display_name="root-driver", state="SUCCEEDED"),
            ]
        ),
    )
    status = KubeflowPipelines().status("6f1c-run")
    assert status.state == JobState.SUCCEEDED
    assert status.tasks == {"ExampleGen": StageStatus.CACHED, "Trainer": StageStatus.COMPLETED}


def test_kubeflow_cancel_terminates_the_run(kubeflow_configured):
    KubeflowPipelines().cancel("6f1c-run")
    assert CALLS[-1] == ("terminate_run", {"run_id": "6f1c-run"})
