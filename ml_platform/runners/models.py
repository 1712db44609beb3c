"""Where runs execute: a project's runner, and the remote job a run became on Kubeflow or Vertex AI."""

from __future__ import annotations

from django.db import models

from ml_platform.projects.models import Project
from ml_platform.training.models import TrainingRun


class RunnerKind(models.TextChoices):
    LOCAL = "local", "Local worker"
    KUBEFLOW = "kubeflow", "Kubeflow Pipelines"
    VERTEX = "vertex", "Vertex AI Pipelines"


class ProjectRunner(models.Model):
    """The runner a project's runs go to unless a run names its own (no row: ``DEFAULT_RUNNER``)."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="runner_setting")
    runner = models.CharField(max_length=20, choices=RunnerKind.choices, default=RunnerKind.LOCAL)
    updated_at = models.DateTimeField(auto_now=True)


class JobState(models.TextChoices):
    """A remote job's state in one vocabulary for both services (their own names are in ``service_state``)."""

    QUEUED = "queued", "Waiting to be submitted"
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    CANCELLING = "cancelling", "Cancelling"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


JOB_ENDED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class RemoteJob(models.Model):
    """A run sent to a remote runner: the job it became there, and what its service last said of it.

    Progress comes by the run's signed webhooks; the worker also reads the job's state (and its tasks')
    every ``REMOTE_POLL_SECONDS``, so a run whose job ended without telling (its webhooks lost) is ended too.
    """

    run = models.OneToOneField(TrainingRun, on_delete=models.CASCADE, related_name="remote_job")
    backend = models.CharField(max_length=20, choices=RunnerKind.choices)
    state = models.CharField(max_length=20, choices=JobState.choices, default=JobState.QUEUED)
    service_state = models.CharField(max_length=60, blank=True, help_text="The state as the service names it")
    resource_name = models.CharField(max_length=500, blank=True, help_text="The job's name at its service")
    console_url = models.URLField(max_length=1000, blank=True)
    task_states = models.JSONField(default=dict, blank=True, help_text="stage -> the service's task state")
    error = models.TextField(blank=True)
    cancel_sent = models.BooleanField(default=False)
    submitted_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["state", "checked_at"], name="remote_job_poll_idx")]

    def __str__(self) -> str:
        return f"{self.backend} job of run {self.run_id}: {self.state}"

    @property
    def ended(self) -> bool:
        return self.state in JOB_ENDED
