"""Training runs: creation (validated end to end), cancel, delete, rerun, and results."""

from __future__ import annotations

import shutil
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from pydantic import Field

from ml_platform.core.errors import ApiError
from ml_platform.datasets.models import Dataset
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.registry.models import RegisteredModel
from ml_platform.training import specs
from ml_platform.training.models import InvalidTransition, TrainingRun, empty_stage_table
from ml_pipeline.config.dataset import StrictModel
from ml_pipeline.errors import ConfigError, Problem, validate_model
from ml_pipeline.stages.compile import check_spec

GPU_TYPES = ("T4", "L4", "V100", "A100", "H100")


class GpuConfig(StrictModel):
    """GPUs for the Trainer. Locally: how many visible GPUs to use (0 = CPU)."""

    gpu_type: Literal["T4", "L4", "V100", "A100", "H100"] | None = None
    gpu_count: int = Field(default=0, ge=0, le=16)
    preemptible: bool = False
    allow_cpu_fallback: bool = False


class ScheduleConfig(StrictModel):
    """Stored with the run; the scheduling issue turns it into recurring runs."""

    schedule_type: Literal["none", "once", "hourly", "daily", "weekly", "monthly"] = "none"
    timezone: str = "UTC"
    scheduler_job_id: str | None = None


def cost_usd(run: TrainingRun, seconds: float | None = None) -> Decimal:
    """GPU price per hour x GPUs x hours; local CPU runs cost nothing."""
    seconds = run.duration_seconds if seconds is None else seconds
    gpu = run.gpu_config or {}
    price = settings.GPU_PRICES_PER_HOUR.get(gpu.get("gpu_type") or "", 0.0)
    hours = (seconds or 0) / 3600
    return Decimal(str(round(price * gpu.get("gpu_count", 0) * hours, 2)))


def _in_project(model, project, object_id, field: str):
    found = model.objects.filter(project=project, pk=object_id).first()
    if found is None:
        raise ConfigError(Problem(field, f"no {model._meta.verbose_name} {object_id} in this project"))
    return found


def _registered_model(project, user, name: str, model_type: str, description: str) -> RegisteredModel:
    registered, _ = RegisteredModel.objects.get_or_create(
        project=project, name=name,
        defaults={"model_type": model_type, "description": description, "created_by": user},
    )
    if registered.model_type != model_type:
        raise ConfigError(Problem("name", f"'{name}' is a {registered.model_type} model; "
                                          f"this run trains a {model_type} model"))
    return registered


def validate_parameters(gpu_config: dict, schedule_config: dict) -> tuple[dict, dict]:
    problems, parsed = [], []
    for model, data, prefix in ((GpuConfig, gpu_config, "gpu_config"),
                                (ScheduleConfig, schedule_config, "schedule_config")):
        try:
            parsed.append(validate_model(model, data or {}, prefix=prefix).model_dump())
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    return parsed[0], parsed[1]


def snapshot_dataset(dataset: Dataset) -> dict:
    return {"id": dataset.id, "name": dataset.name, "source": dataset.source, "mapping": dataset.mapping,
            "filters": dataset.filters}


def prepare_spec(run: TrainingRun):
    """Build and check the run's spec against its source (columns exist, configs fit)."""
    spec = specs.build_spec(
        project=run.project, name=run.name, run_number=run.run_number, dataset_snapshot=run.dataset_snapshot,
        feature_config=run.feature_config_snapshot, model_config=run.model_config_snapshot,
        split_config=run.split_config, training_params=run.training_params, gpu_config=run.gpu_config,
        evaluator_config=run.evaluator_config,
    )
    problems = check_spec(spec)
    if problems:
        raise specs.as_run_problems(ConfigError(problems))
    return spec


def create_training_run(project, user, *, name: str, description: str = "", dataset_id: int,
                        feature_config_id: int, model_config_id: int, split_config: dict | None = None,
                        training_params: dict | None = None, gpu_config: dict | None = None,
                        evaluator_config: dict | None = None, schedule_config: dict | None = None,
                        rerun_of: TrainingRun | None = None) -> TrainingRun:
    """Validate everything a run needs, then queue it (status pending)."""
    dataset = _in_project(Dataset, project, dataset_id, "dataset_id")
    features = _in_project(FeatureConfig, project, feature_config_id, "feature_config_id")
    model = _in_project(ModelConfig, project, model_config_id, "model_config_id")
    gpu, schedule = validate_parameters(gpu_config, schedule_config)
    with transaction.atomic():
        registered = _registered_model(project, user, name, model.model_type, description)
        return _queue_run(
            project=project, name=name, description=description, registered_model=registered,
            rerun_of=rerun_of, dataset=dataset, feature_config=features, model_config=model,
            model_type=model.model_type, dataset_snapshot=snapshot_dataset(dataset),
            feature_config_snapshot=features.config, model_config_snapshot=model.config,
            split_config=split_config or {}, training_params=training_params or {}, gpu_config=gpu,
            evaluator_config=evaluator_config or {}, schedule_config=schedule, created_by=user,
        )


def _queue_run(**fields) -> TrainingRun:
    """Save a new pending run with the next run number and a spec checked against its source."""
    for _ in range(5):  # two creators may race for a run number: the unique constraint decides
        run = TrainingRun(run_number=TrainingRun.next_run_number(fields["project"]), stages=empty_stage_table(),
                          spec={}, **fields)
        spec = prepare_spec(run)
        run.spec = spec.model_dump(mode="json")
        run.total_epochs = spec.training.epochs
        # Unique even if a project is deleted and recreated under the same name.
        run.pipeline_run_id = f"run-{run.run_number}-{uuid.uuid4().hex[:8]}"
        try:
            with transaction.atomic():
                run.save()
        except IntegrityError:
            continue
        return run
    raise ApiError(409, "Could not allocate a run number; try again")


def request_cancel(run: TrainingRun) -> TrainingRun:
    """Queued runs are cancelled at once; running ones are stopped by their worker within seconds."""
    if run.is_terminal:
        raise ApiError(409, f"Run is already {run.status}")
    if run.status in (TrainingRun.PENDING, TrainingRun.SCHEDULED):
        try:
            run.transition(TrainingRun.CANCELLED, error_message="cancelled before it started")
            return run
        except InvalidTransition:
            run.refresh_from_db()  # a worker took it meanwhile: cancel it as a running run
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    run.refresh_from_db()
    return run


def run_folder(run: TrainingRun) -> Path:
    return Path(settings.PIPELINE_ROOT) / run.spec.get("name", "") / "runs" / run.pipeline_run_id


def delete_run(run: TrainingRun) -> None:
    """Terminal runs only; removes the run's artifacts too."""
    if not run.is_terminal:
        raise ApiError(409, f"Only finished runs can be deleted; this one is {run.status}")
    registered = run.registered_model
    if registered and run.registry_version and registered.deployed_version == run.registry_version:
        raise ApiError(409, f"Version {run.registry_version} of {registered.name} is deployed; undeploy it first")
    folder = run_folder(run)
    run.delete()
    if run.pipeline_run_id and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


COPIED_ON_RERUN = (
    "project", "name", "description", "registered_model", "dataset", "feature_config", "model_config",
    "model_type", "dataset_snapshot", "feature_config_snapshot", "model_config_snapshot", "split_config",
    "training_params", "gpu_config", "evaluator_config",
)


def rerun(run: TrainingRun, user) -> TrainingRun:
    """Same name, same configs, a new run number; the schedule config keeps no scheduler job id."""
    if not run.is_terminal:
        raise ApiError(409, f"Only finished runs can be rerun; this one is {run.status}")
    fields = {name: getattr(run, name) for name in COPIED_ON_RERUN}
    return _queue_run(**fields, rerun_of=run, created_by=user,
                      schedule_config={**run.schedule_config, "scheduler_job_id": None})


def mark_started(run: TrainingRun, worker_id: str, pid: int | None) -> None:
    TrainingRun.objects.filter(pk=run.pk).update(worker_id=worker_id, worker_pid=pid, heartbeat_at=timezone.now())
