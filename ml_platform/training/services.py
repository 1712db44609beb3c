"""Training runs: creation (validated end to end), cancel, delete, rerun, and results."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from django.db import transaction
from pydantic import AfterValidator, AwareDatetime, Field

from ml_pipeline.config.dataset import StrictModel
from ml_pipeline.errors import ConfigError, Problem, validate_model
from ml_pipeline.spec import PipelineSpec
from ml_pipeline.stages.compile import check_spec
from ml_platform.core.errors import Conflict
from ml_platform.datasets.access import data_access_for
from ml_platform.datasets.models import Dataset
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.registry.models import RegisteredModel
from ml_platform.runners import services as remote
from ml_platform.schedules import timing
from ml_platform.training import rules, specs
from ml_platform.training.diffs import DIFFED, config_diff
from ml_platform.training.models import InvalidTransition, RunNumberCounter, TrainingRun, empty_stage_table
from ml_platform.training.run_folders import remove_run_files, run_folder, stages_reused_elsewhere  # noqa: F401 (run_folder: its old home)

GpuType = Literal["T4", "L4", "V100", "A100", "H100"]


class GpuConfig(StrictModel):
    """GPUs for the Trainer. Locally: how many visible GPUs to use (0 = CPU)."""

    gpu_type: GpuType | None = None
    gpu_count: int = Field(default=0, ge=0, le=16)
    preemptible: bool = False
    allow_cpu_fallback: bool = False
    fallback: list[str] | None = Field(
        default=None,
        description="Vertex AI: GPU shapes to try in order when the run's own cannot be had, e.g. ['4xT4', '2xT4']; "
        "default GPU_FALLBACK_ORDER",
    )


def _iana_zone(name: str) -> str:
    timing.zone(name)  # ValueError: not an IANA zone
    return name


class ScheduleConfig(StrictModel):
    """Stored with the run: a run a schedule fired says which (``scheduler_job_id``), in which zone.
    Schedules themselves are ml_platform.schedules'."""

    schedule_type: Literal["none", "once", "hourly", "daily", "weekly", "monthly"] = "none"
    timezone: Annotated[str, AfterValidator(_iana_zone)] = "UTC"
    scheduler_job_id: str | None = None
    scheduled_for: AwareDatetime | None = Field(None, description="The occurrence: a relative data window ends there")


def _in_project(model, project, object_id, field: str):
    found = model.objects.filter(project=project, pk=object_id).first()
    if found is None:
        raise ConfigError(Problem(field, f"no {model._meta.verbose_name} {object_id} in this project"))
    return found


def _registered_model(project, user, name: str, model_type: str, description: str) -> RegisteredModel:
    registered, _ = RegisteredModel.objects.get_or_create(
        project=project,
        name=name,
        defaults={"model_type": model_type, "description": description, "created_by": user},
    )
    if registered.model_type != model_type:
        raise ConfigError(
            Problem("name", f"'{name}' is a {registered.model_type} model; this run trains a {model_type} model")
        )
    return registered


def validate_parameters(gpu_config: dict, schedule_config: dict) -> tuple[dict, dict]:
    problems, parsed = [], []
    for model, data, prefix in (
        (GpuConfig, gpu_config, "gpu_config"),
        (ScheduleConfig, schedule_config, "schedule_config"),
    ):
        try:
            parsed.append(validate_model(model, data or {}, prefix=prefix).model_dump(mode="json"))
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    return parsed[0], parsed[1]


def snapshot_dataset(dataset: Dataset) -> dict:
    return {
        "id": dataset.id,
        "name": dataset.name,
        "source": dataset.source,
        "mapping": dataset.mapping,
        "filters": dataset.filters,
    }


def prepare_spec(run: TrainingRun):
    """Build and check the run's spec against its source (columns exist, configs fit)."""
    spec = specs.build_spec(
        project=run.project,
        name=run.name or f"experiment-{run.run_number}",
        run_number=run.run_number,
        dataset_snapshot=run.dataset_snapshot,
        feature_config=run.feature_config_snapshot,
        model_config=run.model_config_snapshot,
        split_config=run.split_config,
        training_params=run.training_params,
        gpu_config=run.gpu_config,
        evaluator_config=run.evaluator_config,
        with_pusher=not run.is_experiment,
        data_as_of=(run.schedule_config or {}).get("scheduled_for"),
    ).model_copy(update={"data_access": data_access_for(run.project)})
    specs.check_baseline_model(run.project, run.evaluator_config.get("baseline_model_uri"))
    problems = check_spec(spec)
    if problems:
        raise specs.as_run_problems(ConfigError(problems))
    if run.from_stage and run.from_stage not in spec.stages:
        raise ConfigError(
            Problem("from_stage", f"'{run.from_stage}' is not a stage of this run; one of {', '.join(spec.stages)}")
        )
    return spec


def catalog_fields(project, dataset_id: int, feature_config_id: int, model_config_id: int) -> dict:
    """The catalog objects a run is made from, and the frozen snapshots it keeps of them."""
    problems, found = [], {}
    for model, object_id, field in (
        (Dataset, dataset_id, "dataset_id"),
        (FeatureConfig, feature_config_id, "feature_config_id"),
        (ModelConfig, model_config_id, "model_config_id"),
    ):
        try:
            found[field] = _in_project(model, project, object_id, field)
        except ConfigError as error:
            problems += error.problems
    if problems:
        raise ConfigError(problems)
    dataset, features, model = found["dataset_id"], found["feature_config_id"], found["model_config_id"]
    return {
        "dataset": dataset,
        "feature_config": features,
        "model_config": model,
        "model_type": model.model_type,
        "dataset_snapshot": snapshot_dataset(dataset),
        "feature_config_snapshot": features.config,
        "model_config_snapshot": model.config,
    }


# What a run made from an experiment takes from it: the configurations exactly as they were tested.
FROM_EXPERIMENT = (
    "dataset",
    "feature_config",
    "model_config",
    "model_type",
    "dataset_snapshot",
    "feature_config_snapshot",
    "model_config_snapshot",
)


def _experiment_fields(project, experiment_id: int, given_ids: dict) -> tuple[TrainingRun, dict]:
    if any(value is not None for value in given_ids.values()):
        raise ConfigError(
            [
                Problem(field, "give either experiment_id or the configurations, not both")
                for field, value in given_ids.items()
                if value is not None
            ]
        )
    experiment = TrainingRun.objects.filter(project=project, kind=TrainingRun.EXPERIMENT, pk=experiment_id).first()
    if experiment is None:
        raise ConfigError(Problem("experiment_id", f"no experiment {experiment_id} in this project"))
    if experiment.status != TrainingRun.COMPLETED:
        raise ConfigError(
            Problem(
                "experiment_id", f"{experiment} is {experiment.status}; only a completed experiment can be promoted"
            )
        )
    return experiment, {name: getattr(experiment, name) for name in FROM_EXPERIMENT}


def create_training_run(
    project,
    user,
    *,
    name: str,
    description: str = "",
    experiment_id: int | None = None,
    dataset_id: int | None = None,
    feature_config_id: int | None = None,
    model_config_id: int | None = None,
    split_config: dict | None = None,
    training_params: dict | None = None,
    gpu_config: dict | None = None,
    evaluator_config: dict | None = None,
    schedule_config: dict | None = None,
    runner: str | None = None,
) -> TrainingRun:
    """Validate everything a run needs, then queue it (status pending) for its runner (``runner``, else the
    project's: see ml_platform.runners).

    The configurations come either from the catalog (the three ids) or from
    an experiment (``experiment_id``: promoted exactly as it was tested). A
    promoted run starts from the experiment's split and training params, with
    ``split_config`` and ``training_params`` merged over them, and trains on
    all the data unless ``split_config.sample_percent`` says otherwise.
    """
    ids = {"dataset_id": dataset_id, "feature_config_id": feature_config_id, "model_config_id": model_config_id}
    experiment = None
    if experiment_id is not None:
        experiment, catalog = _experiment_fields(project, experiment_id, ids)
        split_config = {**experiment.split_config, "sample_percent": 100.0, **(split_config or {})}
        training_params = {**experiment.training_params, **(training_params or {})}
    else:
        missing = [Problem(field, "required (or give experiment_id)") for field, value in ids.items() if value is None]
        if missing:
            raise ConfigError(missing)
        catalog = catalog_fields(project, **ids)
    parameters = _parameters(split_config, training_params, gpu_config, evaluator_config, schedule_config)
    runner = remote.choose(project, runner, parameters["gpu_config"])
    run, spec = _new_run(
        project=project,
        kind=TrainingRun.TRAINING,
        name=name,
        description=description,
        source_experiment=experiment,
        **catalog,
        **parameters,
        created_by=user,
    )
    with transaction.atomic():
        run.registered_model = _registered_model(project, user, name, catalog["model_type"], description)
        run = _save_numbered(run, spec)
        remote.attach(run, runner)
        return run


def create_experiment(
    project,
    user,
    *,
    dataset_id: int,
    feature_config_id: int,
    model_config_id: int,
    name: str = "",
    description: str = "",
    split_config: dict | None = None,
    training_params: dict | None = None,
    gpu_config: dict | None = None,
    evaluator_config: dict | None = None,
    runner: str | None = None,
) -> TrainingRun:
    """Queue a quick test: the pipeline without the Pusher, usually on a sample (``split_config.sample_percent``)."""
    catalog = catalog_fields(project, dataset_id, feature_config_id, model_config_id)
    parameters = _parameters(split_config, training_params, gpu_config, evaluator_config, {})
    runner = remote.choose(project, runner, parameters["gpu_config"])
    return _queue_run(
        runner,
        project=project,
        kind=TrainingRun.EXPERIMENT,
        name=name,
        description=description,
        **catalog,
        **parameters,
        created_by=user,
    )


def _parameters(split_config, training_params, gpu_config, evaluator_config, schedule_config) -> dict:
    """A new run's parameter columns; the GPU and schedule configs are checked here, the rest with the spec."""
    gpu, schedule = validate_parameters(gpu_config, schedule_config)
    return {
        "split_config": split_config or {},
        "training_params": training_params or {},
        "gpu_config": gpu,
        "evaluator_config": evaluator_config or {},
        "schedule_config": schedule,
    }


def _queue_run(runner: str, **fields) -> TrainingRun:
    """Save a new pending run with the next run number and a spec checked against its source, for its runner."""
    run = _save_numbered(*_new_run(**fields))
    remote.attach(run, runner)
    return run


def _new_run(**fields) -> tuple[TrainingRun, PipelineSpec]:
    """An unsaved run and its spec, checked against its source: done before the saving transaction, as it
    reads the source, so concurrent creators hold the run-number counter only for a moment."""
    run = TrainingRun(run_number=0, spec={}, **fields)
    return run, prepare_spec(run)


def _save_numbered(run: TrainingRun, spec: PipelineSpec) -> TrainingRun:
    """Give the run the project's next number (see RunNumberCounter) and save it, in one transaction."""
    prefix = "exp" if run.kind == TrainingRun.EXPERIMENT else "run"
    with transaction.atomic():
        run.run_number = RunNumberCounter.take_next(run.project, run.kind)
        # The number names the pushed model's folder, the only part of the spec it changes.
        destination = specs.push_destination(
            run.project.unique_name, run.name or f"experiment-{run.run_number}", run.run_number
        )
        spec = spec.model_copy(update={"push": spec.push.model_copy(update={"destination": destination})})
        run.spec = spec.model_dump(mode="json")
        run.stages = empty_stage_table(spec.stages)
        run.total_epochs = spec.training.epochs
        # Unique even if a project is deleted and recreated under the same name.
        run.pipeline_run_id = f"{prefix}-{run.run_number}-{uuid.uuid4().hex[:8]}"
        run.save()
    return run


def request_cancel(run: TrainingRun) -> TrainingRun:
    """Queued and remote runs are cancelled at once; local running ones are stopped by their worker within seconds."""
    if refused := rules.cancel_refused(rules.RunState.of(run)):
        raise Conflict(refused)
    if run.status in (TrainingRun.PENDING, TrainingRun.SCHEDULED):
        try:
            run.transition(TrainingRun.CANCELLED, error_message="cancelled before it started")
            return run
        except InvalidTransition:
            run.refresh_from_db()  # a worker took it meanwhile: cancel it as a running run
    if run.is_remote:
        # No local worker to stop it: the run ends now, and its runner's next event is refused (409), its
        # signal to stop.
        try:
            run.transition(TrainingRun.CANCELLED, error_message="cancelled by a user")
            remote.cancel(run)  # its job at Kubeflow or Vertex AI, if it has one (retried by the worker)
        except InvalidTransition:
            run.refresh_from_db()  # it finished just before the cancel landed
        return run
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    run.refresh_from_db()
    return run


EDITABLE = rules.EDITABLE


def update_config(run: TrainingRun, changes: dict) -> list[str]:
    """Replace the given sections of a finished or scheduled run's parameters, checked by rebuilding its spec;
    the sections changed, by name (``run`` is refreshed).

    Conflict while the run is queued or running (or when it starts meanwhile); ConfigError naming the field
    otherwise.
    """
    if refused := rules.edit_refused(rules.RunState.of(run)):
        raise Conflict(refused)
    changes = {k: v for k, v in changes.items() if v is not None}
    if "schedule_config" in changes:  # the scheduler's job (unless given) and occurrence are not the form's
        changes["schedule_config"] = {
            "scheduler_job_id": run.schedule_config.get("scheduler_job_id"),
            **changes["schedule_config"],
            "scheduled_for": run.schedule_config.get("scheduled_for"),
        }
    gpu, schedule = validate_parameters(
        changes.get("gpu_config", run.gpu_config), changes.get("schedule_config", run.schedule_config)
    )
    if "gpu_config" in changes:
        changes["gpu_config"] = gpu
    if "schedule_config" in changes:
        changes["schedule_config"] = schedule
    for field, value in changes.items():
        setattr(run, field, value)
    spec = prepare_spec(run)
    fields = {**changes, "spec": spec.model_dump(mode="json")}
    if run.status == TrainingRun.SCHEDULED:  # a finished run keeps the epoch count it ran with
        fields["total_epochs"] = spec.training.epochs
    # Guarded: a scheduled run may have been queued meanwhile.
    if not TrainingRun.objects.filter(pk=run.pk, status__in=EDITABLE).update(**fields):
        raise Conflict("The run started meanwhile; its configuration can no longer be edited")
    run.refresh_from_db()
    return sorted(changes)


def delete_run(run: TrainingRun) -> None:
    """Terminal runs only; removes the run's artifacts too (through the store's filesystem), except the stages
    later runs reused."""
    if refused := rules.delete_refused(rules.RunState.of(run)):
        raise Conflict(refused)
    kept = stages_reused_elsewhere(run)
    run.delete()
    remove_run_files(run, kept)


COPIED_ON_RERUN = (
    "project",
    "kind",
    "name",
    "description",
    "registered_model",
    "source_experiment",
    *FROM_EXPERIMENT,
    "split_config",
    "training_params",
    "gpu_config",
    "evaluator_config",
)
# A rerun may take other catalog objects: each id -> (model, run field, snapshot field, snapshot).
RERUN_CATALOG = {
    "dataset_id": (Dataset, "dataset", "dataset_snapshot", snapshot_dataset),
    "feature_config_id": (FeatureConfig, "feature_config", "feature_config_snapshot", lambda found: found.config),
    "model_config_id": (ModelConfig, "model_config", "model_config_snapshot", lambda found: found.config),
}
RERUN_SECTIONS = ("description", "split_config", "training_params", "gpu_config", "evaluator_config")


def rerun(run: TrainingRun, user, *, from_stage: str | None = None, changes: dict | None = None) -> TrainingRun:
    """A new run number with the same name and configs, submitted at once; no scheduler job id is copied.

    ``changes`` edits the copy: a section given (training_params, ...)
    replaces the original's whole, and a catalog id takes a fresh snapshot
    of that object. ``from_stage`` recomputes from that stage on; every stage
    before it is reused from the cache when its fingerprint still matches
    (a training_params edit leaves ExampleGen..Transform reusable, a
    feature config edit does not), otherwise it runs again. The new run
    keeps its config diff against the original.
    """
    if refused := rules.rerun_refused(rules.RunState.of(run)):
        raise Conflict(refused)
    changes = {name: value for name, value in (changes or {}).items() if value is not None}
    fields = {name: getattr(run, name) for name in COPIED_ON_RERUN}
    problems = []
    for field, (model, run_field, snapshot_field, snapshot) in RERUN_CATALOG.items():
        if field not in changes:
            continue
        try:
            found = _in_project(model, run.project, changes[field], field)
        except ConfigError as error:
            problems += error.problems
            continue
        if model is ModelConfig and found.model_type != run.model_type:
            problems.append(
                Problem(
                    field,
                    f"'{found.name}' is a {found.model_type} model config; this run trains a {run.model_type} model",
                )
            )
            continue
        fields.update({run_field: found, snapshot_field: snapshot(found)})
    if problems:
        raise ConfigError(problems)
    fields.update({name: changes[name] for name in RERUN_SECTIONS if name in changes})
    fields["gpu_config"], _ = validate_parameters(fields["gpu_config"], {})
    diff = config_diff(
        {label: getattr(run, name) for label, name in DIFFED.items()},
        {label: fields[name] for label, name in DIFFED.items()},
    )
    return _queue_run(
        remote.choose(run.project, remote.runner_of(run), fields["gpu_config"]),
        **fields,
        rerun_of=run,
        from_stage=from_stage or "",
        config_diff=diff,
        created_by=user,
        schedule_config={**run.schedule_config, "scheduler_job_id": None},
    )
