"""The two pipeline services behind one small interface: submit a compiled spec, read a job's state, cancel it.

:class:`VertexPipelines` drives Vertex AI Pipelines through google-cloud-aiplatform's ``PipelineJob``;
:class:`KubeflowPipelines` any Kubeflow Pipelines v2 server through ``kfp.Client``. Both answer in one
vocabulary (:class:`~ml_platform.runners.models.JobState`, and the stages' ``StageStatus`` for tasks), so
the services above never see which one they talk to. Tests replace :data:`FACTORIES` with fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings

from ml_pipeline.spec import STAGES, StageStatus
from ml_platform.runners.models import JobState


@dataclass(frozen=True)
class Submitted:
    resource_name: str
    console_url: str


@dataclass
class JobStatus:
    state: str  # a JobState
    service_state: str
    tasks: dict[str, str] = field(default_factory=dict)  # stage -> StageStatus
    error: str = ""


class PipelineClient(Protocol):
    def submit(
        self, *, ir_path: str, display_name: str, job_id: str, parameters: dict, pipeline_root: str, labels: dict
    ) -> Submitted: ...

    def status(self, resource_name: str) -> JobStatus: ...

    def cancel(self, resource_name: str) -> None: ...


# Task display names are the stage names (ml_pipeline.kfp.compiler sets them); their states, in the stages'.
VERTEX_TASK_STATES = {
    "PENDING": StageStatus.PENDING,
    "RUNNING": StageStatus.RUNNING,
    "SUCCEEDED": StageStatus.COMPLETED,
    "SKIPPED": StageStatus.CACHED,  # a task whose cache key matched: the earlier output is reused
    "FAILED": StageStatus.FAILED,
    "CANCELLED": StageStatus.CANCELLED,
}
VERTEX_JOB_STATES = {
    "PIPELINE_STATE_QUEUED": JobState.PENDING,
    "PIPELINE_STATE_PENDING": JobState.PENDING,
    "PIPELINE_STATE_RUNNING": JobState.RUNNING,
    "PIPELINE_STATE_PAUSED": JobState.RUNNING,
    "PIPELINE_STATE_CANCELLING": JobState.CANCELLING,
    "PIPELINE_STATE_SUCCEEDED": JobState.SUCCEEDED,
    "PIPELINE_STATE_FAILED": JobState.FAILED,
    "PIPELINE_STATE_CANCELLED": JobState.CANCELLED,
}
KUBEFLOW_STATES = {
    "PENDING": (JobState.PENDING, StageStatus.PENDING),
    "RUNNING": (JobState.RUNNING, StageStatus.RUNNING),
    "PAUSED": (JobState.RUNNING, StageStatus.RUNNING),
    "SUCCEEDED": (JobState.SUCCEEDED, StageStatus.COMPLETED),
    "SKIPPED": (JobState.SUCCEEDED, StageStatus.CACHED),
    "FAILED": (JobState.FAILED, StageStatus.FAILED),
    "CANCELING": (JobState.CANCELLING, StageStatus.RUNNING),
    "CANCELED": (JobState.CANCELLED, StageStatus.CANCELLED),
}


def _name(value) -> str:
    """An enum member's name, or the string itself."""
    return getattr(value, "name", None) or str(value or "")


class VertexPipelines:
    def __init__(self) -> None:
        self.project, self.location = settings.CLOUD_PROJECT_ID, settings.CLOUD_DATA_REGION

    def submit(self, *, ir_path, display_name, job_id, parameters, pipeline_root, labels) -> Submitted:
        from google.cloud import aiplatform

        job = aiplatform.PipelineJob(
            display_name=display_name,
            template_path=ir_path,
            job_id=job_id,
            pipeline_root=pipeline_root,
            parameter_values=parameters,
            enable_caching=True,
            labels=labels,
            project=self.project,
            location=self.location,
        )
        job.submit(service_account=settings.CLOUD_SERVICE_ACCOUNT)
        return Submitted(job.resource_name, job._dashboard_uri())

    def status(self, resource_name: str) -> JobStatus:
        from google.cloud import aiplatform

        job = aiplatform.PipelineJob.get(resource_name, project=self.project, location=self.location)
        tasks = {}
        for task in job.task_details or []:
            stage = next((s for s in STAGES if s.lower() == str(task.task_name).lower()), None)
            state = VERTEX_TASK_STATES.get(_name(task.state))
            if stage and state:
                tasks[stage] = state
        service_state = _name(job.state)
        error = getattr(getattr(job.gca_resource, "error", None), "message", "") or ""
        return JobStatus(VERTEX_JOB_STATES.get(service_state, JobState.RUNNING), service_state, tasks, error)

    def cancel(self, resource_name: str) -> None:
        from google.cloud import aiplatform

        aiplatform.PipelineJob.get(resource_name, project=self.project, location=self.location).cancel()


class KubeflowPipelines:
    def __init__(self) -> None:
        import kfp

        self.host = settings.KUBEFLOW_HOST.rstrip("/")
        options = {"namespace": settings.KUBEFLOW_NAMESPACE} if settings.KUBEFLOW_NAMESPACE else {}
        self.client = kfp.Client(host=self.host, existing_token=settings.KUBEFLOW_TOKEN or None, **options)

    def submit(self, *, ir_path, display_name, job_id, parameters, pipeline_root, labels) -> Submitted:
        result = self.client.create_run_from_pipeline_package(
            ir_path,
            arguments=parameters,
            run_name=display_name,
            experiment_name=labels.get("ml-platform-project") or None,
            pipeline_root=pipeline_root,
            enable_caching=True,
        )
        return Submitted(result.run_id, f"{self.host}/#/runs/details/{result.run_id}")

    def status(self, resource_name: str) -> JobStatus:
        run = self.client.get_run(resource_name)
        service_state = _name(run.state)
        tasks = {}
        for task in getattr(run.run_details, "task_details", None) or []:
            state = KUBEFLOW_STATES.get(_name(task.state))
            if task.display_name in STAGES and state:
                tasks[task.display_name] = state[1]
        error = getattr(run.error, "message", "") if run.error else ""
        return JobStatus(KUBEFLOW_STATES.get(service_state, (JobState.RUNNING,))[0], service_state, tasks, error or "")

    def cancel(self, resource_name: str) -> None:
        self.client.terminate_run(resource_name)


FACTORIES: dict[str, Callable[[], PipelineClient]] = {"vertex": VertexPipelines, "kubeflow": KubeflowPipelines}


def client_for(backend: str) -> PipelineClient:
    return FACTORIES[backend]()
