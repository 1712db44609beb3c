"""Runs on Kubeflow Pipelines and Vertex AI: choosing the runner, submitting, following and cancelling jobs.

A run whose runner is remote is created pending with a :class:`RemoteJob` (queued) and ``runner=remote``, so
the local worker never claims it. The worker's loop calls :func:`step`, which

1. submits queued jobs: the run goes pending -> submitting, its spec is compiled to one KFP v2 pipeline
   spec (kept as ``pipeline.yaml`` in the run's folder) with the local fingerprints as cache keys, and
   the job's resource name and console URL are kept on the run's job;
2. reads the state of every job not ended, each ``REMOTE_POLL_SECONDS``: task states move the stage table
   forward (a task reused from KFP's cache reports nothing itself), and a job that ended ends its run, so
   a run never shows running after its job ended even when its webhooks never arrived;
3. sends the cancel of every cancelled run whose job is still going (again, until it is sent).

Progress otherwise arrives by the run's signed webhooks (``ml_platform.training.webhooks``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from ml_pipeline.errors import ConfigError
from ml_pipeline.kfp.compiler import compile_pipeline
from ml_pipeline.kfp.gpus import shapes
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.spec import PipelineSpec, StageStatus
from ml_platform.core import clock
from ml_platform.datasets.access import data_access_for
from ml_platform.runners import clients, config
from ml_platform.runners.models import JOB_ENDED, JobState, ProjectRunner, RemoteJob
from ml_platform.training.models import (
    InvalidStageTransition,
    InvalidTransition,
    TrainingRun,
    check_stage_move,
)

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- choosing


def project_runner(project) -> str:
    setting = ProjectRunner.objects.filter(project=project).values_list("runner", flat=True).first()
    return setting or settings.DEFAULT_RUNNER


def set_project_runner(project, runner: str) -> str:
    config.require(runner)
    ProjectRunner.objects.update_or_create(project=project, defaults={"runner": runner})
    return runner


def choose(project, requested: str | None, gpu_config: dict) -> str:
    """The runner a new run goes to (``requested``, else the project's), refused naming what it lacks:
    a missing setting (``runner``), a GPU type the training region does not offer, a bad fallback order."""
    runner = requested or project_runner(project)
    config.require(runner)
    if runner == "vertex" and (gpu_config or {}).get("gpu_count"):
        region = settings.CLOUD_GPU_TRAINING_REGION or settings.CLOUD_DATA_REGION
        fallback = config.fallback_order(gpu_config.get("fallback"))
        shapes(gpu_config.get("gpu_type"), gpu_config["gpu_count"], fallback, region)  # the shape, in the region
    return runner


def attach(run: TrainingRun, runner: str) -> None:
    """Give a new remote run its queued job; the local worker then leaves it alone."""
    if runner == "local":
        return
    RemoteJob.objects.create(run=run, backend=runner)
    TrainingRun.objects.filter(pk=run.pk).update(runner=TrainingRun.REMOTE)
    run.runner = TrainingRun.REMOTE


def runner_of(run: TrainingRun) -> str:
    job = RemoteJob.objects.filter(run=run).values_list("backend", flat=True).first()
    return job or "local"


# --------------------------------------------------------------------------- submitting


def remote_spec(spec: PipelineSpec, artifact_root: str) -> PipelineSpec:
    """The spec as the remote tasks run it: the blessed model pushed under the remote artifact root."""
    pushed = (spec.push.destination or "").split("/pushed/", 1)
    destination = f"{artifact_root.rstrip('/')}/pushed/{pushed[1]}" if len(pushed) == 2 else None
    return spec.model_copy(update={"push": spec.push.model_copy(update={"destination": destination})})


def job_id(run: TrainingRun) -> str:
    """Vertex AI's job ids: lower-case letters, digits and dashes, starting with a letter, at most 128."""
    return re.sub(r"[^a-z0-9-]", "-", f"mlp-{run.pk}-{run.pipeline_run_id}".lower())[:128]


def compile_run(run: TrainingRun, backend: str) -> tuple[str, object]:
    """The run's compiled IR YAML for ``backend`` and its target."""
    gpu = run.gpu_config or {}
    target = config.target(backend, run.pk, config.fallback_order(gpu.get("fallback")))
    spec = remote_spec(PipelineSpec.model_validate(run.spec), target.artifact_root)
    local = spec.model_copy(update={"data_access": data_access_for(run.project)})
    prints = PipelineRunner(local, settings.PIPELINE_ROOT, run_id=run.pipeline_run_id).fingerprints()
    text = compile_pipeline(
        spec,
        target,
        run_id=run.pipeline_run_id,
        fingerprints=prints,
        gpu_type=gpu.get("gpu_type"),
        preemptible=bool(gpu.get("preemptible")),
    )
    return text, target


def submit(job: RemoteJob) -> None:
    from ml_platform.training import run_folders

    run = job.run
    try:
        run.transition(TrainingRun.SUBMITTING)
    except InvalidTransition:
        return  # cancelled meanwhile
    try:
        config.require(job.backend)
        text, target = compile_run(run, job.backend)
        stored = run_folders.write_run_file(run, "pipeline.yaml", text)  # kept beside the run's artifacts
        with run_folders.local_copy(stored) as ir_path:
            submitted = clients.client_for(job.backend).submit(
                ir_path=ir_path,
                display_name=str(run)[:128],
                job_id=job_id(run),
                parameters={"webhook_secret": run.webhook_secret},
                pipeline_root=target.pipeline_root,
                labels={"ml-platform-run": str(run.pk), "ml-platform-project": str(run.project_id)},
            )
    except Exception as error:  # noqa: BLE001 (any refusal, the settings' or the service's, fails the run now)
        message = error.problems[0].message if isinstance(error, ConfigError) else f"{type(error).__name__}: {error}"
        logger.warning("run %s could not be submitted to %s: %s", run.pk, job.backend, message)
        RemoteJob.objects.filter(pk=job.pk).update(state=JobState.FAILED, error=message, checked_at=clock.now())
        with contextlib.suppress(InvalidTransition):
            run.transition(TrainingRun.FAILED, error_message=f"could not submit to {job.backend}: {message}")
        return
    RemoteJob.objects.filter(pk=job.pk).update(
        state=JobState.PENDING,
        resource_name=submitted.resource_name,
        console_url=submitted.console_url,
        submitted_at=clock.now(),
        checked_at=clock.now(),  # first read one poll interval later: a job just submitted has nothing to say
    )
    logger.info("run %s submitted to %s as %s", run.pk, job.backend, submitted.resource_name)


# --------------------------------------------------------------------------- following


def _move_stages(run: TrainingRun, tasks: dict[str, str]) -> None:
    """Move the stage table forward to the tasks' states (never backwards: webhooks may have said more)."""
    with transaction.atomic():
        stages = TrainingRun.objects.select_for_update().values_list("stages", flat=True).get(pk=run.pk)
        changed = dict(stages or {})
        for stage, state in tasks.items():
            current = (changed.get(stage) or {}).get("status", StageStatus.PENDING)
            if state == current:
                continue
            try:
                check_stage_move(stage, current, state)
            except InvalidStageTransition:
                continue
            changed[stage] = {**(changed.get(stage) or {}), "status": state}
        if changed != stages:
            TrainingRun.objects.filter(pk=run.pk).update(stages=changed)


def _end_run(run: TrainingRun, job: RemoteJob, status: clients.JobStatus) -> None:
    """End a run whose job ended, when its runner's own reports did not."""
    try:
        if status.state == JobState.CANCELLED:
            run.transition(TrainingRun.CANCELLED, error_message=f"the {job.backend} job was cancelled")
            return
        if run.status in (TrainingRun.PENDING, TrainingRun.SUBMITTING):
            run.transition(TrainingRun.RUNNING)
        if status.state == JobState.SUCCEEDED:
            run.transition(run.outcome_status(True, None))
        else:
            failed = next((stage for stage, state in status.tasks.items() if state == StageStatus.FAILED), "")
            message = status.error or f"the {job.backend} job failed ({status.service_state}) without reporting why"
            run.transition(TrainingRun.FAILED, error_stage=failed, error_message=message)
    except InvalidTransition:
        pass  # its runner's report got there first


def poll(job: RemoteJob) -> None:
    status = clients.client_for(job.backend).status(job.resource_name)
    RemoteJob.objects.filter(pk=job.pk).update(
        state=status.state,
        service_state=status.service_state,
        task_states=status.tasks,
        error=status.error,
        checked_at=clock.now(),
    )
    run = TrainingRun.objects.get(pk=job.run_id)
    if run.is_terminal:
        return
    _move_stages(run, status.tasks)
    if status.state in JOB_ENDED:
        run.refresh_from_db()
        _end_run(run, job, status)


def send_cancel(job: RemoteJob) -> bool:
    """Cancel the job at its service; False when that failed (the worker tries again)."""
    if not job.resource_name or job.ended:
        return True
    try:
        clients.client_for(job.backend).cancel(job.resource_name)
    except Exception:  # noqa: BLE001 (the run is cancelled here already; the job's cancel is retried)
        logger.warning(
            "run %s: could not cancel its %s job %s", job.run_id, job.backend, job.resource_name, exc_info=True
        )
        return False
    RemoteJob.objects.filter(pk=job.pk).update(cancel_sent=True, state=JobState.CANCELLING)
    return True


def cancel(run: TrainingRun) -> None:
    """What cancelling a remote run does beyond ending it: its job is cancelled at its service."""
    job = RemoteJob.objects.filter(run=run).first()
    if job is not None:
        send_cancel(job)


SUBMISSION_TIMEOUT = timedelta(minutes=10)


def fail_interrupted_submissions() -> int:
    """Runs left submitting by a worker that stopped mid-submission: failed, so none waits for ever (the job
    may exist at its service; it is not sent again, as the run cannot tell)."""
    stuck = RemoteJob.objects.filter(
        state=JobState.QUEUED,
        run__status=TrainingRun.SUBMITTING,
        run__updated_at__lt=clock.now() - SUBMISSION_TIMEOUT,
    ).select_related("run")
    failed = 0
    for job in stuck:
        with contextlib.suppress(InvalidTransition):
            job.run.transition(TrainingRun.FAILED, error_message=f"the submission to {job.backend} was interrupted")
            RemoteJob.objects.filter(pk=job.pk).update(state=JobState.FAILED, error="submission interrupted")
            failed += 1
    return failed


def step() -> int:
    """One round of the worker's remote duties (see the module's docstring); the jobs acted on."""
    done = 0
    RemoteJob.objects.filter(state=JobState.QUEUED, run__status__in=TrainingRun.TERMINAL).update(
        state=JobState.CANCELLED
    )
    for job in RemoteJob.objects.filter(state=JobState.QUEUED, run__status=TrainingRun.PENDING).select_related("run"):
        submit(job)
        done += 1
    done += fail_interrupted_submissions()
    for job in RemoteJob.objects.filter(run__status=TrainingRun.CANCELLED, cancel_sent=False).exclude(
        Q(resource_name="") | Q(state__in=JOB_ENDED)
    ):
        done += send_cancel(job)
    due = clock.now() - timedelta(seconds=settings.REMOTE_POLL_SECONDS)
    following = (
        RemoteJob.objects.exclude(state__in=(*JOB_ENDED, JobState.QUEUED))
        .exclude(resource_name="")
        .filter(Q(checked_at__isnull=True) | Q(checked_at__lt=due))
    )
    for job in following:
        try:
            poll(job)
        except Exception:  # noqa: BLE001 (a service that does not answer now is asked again next round)
            logger.warning("run %s: could not read its %s job's state", job.run_id, job.backend, exc_info=True)
            RemoteJob.objects.filter(pk=job.pk).update(checked_at=clock.now())
        done += 1
    return done
