"""Experiments (quick tests) through the API: create, list, best experiments, view, cancel, delete, promote.

An experiment shares the training run's record, queue and outputs, so the
answers have the training run's shapes (the spec's view modal is one module
with an "experiment" mode) and the handlers reuse the training API's.
"""

from __future__ import annotations

from ninja import Body, Query, Router, Schema, Status
from pydantic import Field

from ml_platform.audit import services as audit
from ml_platform.core.fields import PAGE_MAX, Id
from ml_platform.experiments import services as experiment_services
from ml_platform.projects.access import project_for_user
from ml_platform.training import api as runs
from ml_platform.training import services
from ml_platform.training.models import TrainingRun

router = Router(tags=["experiments"])
EXPERIMENT = TrainingRun.EXPERIMENT


class ExperimentIn(Schema):
    name: str = Field("", max_length=200, description="An optional label ('bigger embeddings')")
    description: str = ""
    dataset_id: int
    feature_config_id: int
    model_config_id: int
    split_config: dict = Field({}, description="sample_percent, strategy, holdout_days, ...")
    training_params: dict = {}
    gpu_config: dict = {}
    evaluator_config: dict = {}


class PromoteIn(Schema):
    """The training run made from the experiment: its configurations as tested, on all the data by default."""

    name: str = Field(min_length=1, max_length=200, description="The registered model's name")
    description: str = ""
    split_config: dict = Field({}, description="Merged over the experiment's (sample_percent defaults to 100)")
    training_params: dict = Field({}, description="Merged over the experiment's")
    gpu_config: dict = {}
    evaluator_config: dict = {}
    schedule_config: dict = {}


class KpiOut(Schema):
    metric: str
    best: float | None
    lower_is_better: bool


class TopConfigurationOut(Schema):
    rank: int
    experiment_id: int
    display_name: str
    dataset_name: str | None
    feature_config_name: str | None
    model_config_name: str | None
    learning_rate: float | None
    batch_size: int | None
    epochs: int | None
    epochs_run: int | None
    sample_percent: float | None
    metric: str
    value: float
    loss: float | None


class ModelTypeBestOut(Schema):
    model_type: str
    count: int
    completed: int
    kpis: list[KpiOut]
    main_metric: str
    top: list[TopConfigurationOut]


def experiment_for_user(user, experiment_id: int, *related: str) -> TrainingRun:
    return runs.run_for_user(user, experiment_id, *related, kind=EXPERIMENT)


@router.post("/projects/{project_id}/experiments/", response={201: runs.RunDetail}, by_alias=True)
def create_experiment(request, project_id: int, payload: ExperimentIn):
    """Validate and queue a quick test (the pipeline without the Pusher)."""
    project = project_for_user(request.user, project_id)
    experiment = services.create_experiment(project, request.user, **payload.model_dump())
    audit.record(request, audit.Action.CREATE, experiment, changes=payload.model_dump(exclude_defaults=True))
    return Status(201, runs.detail_of(experiment.pk))


@router.get("/projects/{project_id}/experiments/", response=runs.RunPage)
def list_experiments(request, project_id: int, status: str | None = None, model_type: str | None = None,
                     dataset_id: Id | None = None, search: str | None = None,
                     page: int = Query(1, ge=1, le=PAGE_MAX), page_size: int = Query(20, ge=1, le=100)):
    """Newest first; ``status`` and ``model_type`` take one value or several, comma-separated."""
    project = project_for_user(request.user, project_id)
    found = runs.filtered_runs(project, EXPERIMENT, status=status, model_type=model_type, dataset_id=dataset_id,
                               search=search)
    return runs.run_page(found, page, page_size)


@router.get("/projects/{project_id}/experiments/best/", response=list[ModelTypeBestOut])
def best_experiments(request, project_id: int, dataset_id: Id | None = None):
    """Per model type (retrieval, ranking, hybrid): a KPI row and the top 10 configurations
    (of one dataset's experiments with ``dataset_id``)."""
    return experiment_services.best_experiments(project_for_user(request.user, project_id), dataset_id)


@router.get("/experiments/{experiment_id}/", response=runs.RunDetail, by_alias=True)
def get_experiment(request, experiment_id: int):
    return runs.run_detail(experiment_for_user(request.user, experiment_id, *runs.DETAIL_RELATED))


@router.post("/experiments/{experiment_id}/cancel/", response=runs.RunDetail, by_alias=True)
def cancel_experiment(request, experiment_id: int):
    """A queued experiment is cancelled at once; a running one is stopped by its worker within seconds."""
    experiment = services.request_cancel(experiment_for_user(request.user, experiment_id))
    audit.record(request, audit.Action.CANCEL, experiment, changes={"status": experiment.status})
    return runs.detail_of(experiment.pk)


@router.delete("/experiments/{experiment_id}/", response={204: None})
def delete_experiment(request, experiment_id: int):
    """Finished experiments only (409 otherwise); their artifacts go too."""
    experiment = experiment_for_user(request.user, experiment_id)
    with audit.recording(request, audit.Action.DELETE, experiment):
        services.delete_run(experiment)
    return Status(204, None)


@router.post("/experiments/{experiment_id}/rerun/", response={201: runs.RunDetail}, by_alias=True)
def rerun_experiment(request, experiment_id: int, payload: Body[runs.RerunIn | None] = None):
    """The same experiment again, or edited (the body as for a training run's rerun)."""
    experiment = runs.rerun_run(request, experiment_for_user(request.user, experiment_id), payload)
    return Status(201, runs.detail_of(experiment.pk))


@router.post("/experiments/{experiment_id}/promote/", response={201: runs.RunDetail}, by_alias=True)
def promote_experiment(request, experiment_id: int, payload: PromoteIn):
    """Start a training run from the experiment (as ``POST /projects/{id}/training-runs/`` with ``experiment_id``)."""
    experiment = experiment_for_user(request.user, experiment_id)
    run = services.create_training_run(experiment.project, request.user, experiment_id=experiment.pk,
                                       **payload.model_dump())
    audit.record(request, audit.Action.PROMOTE, run, changes={"experiment_id": experiment.pk,
                                                              **payload.model_dump(exclude_defaults=True)})
    return Status(201, runs.detail_of(run.pk))


@router.get("/experiments/{experiment_id}/metrics/", response=dict)
def get_metrics(request, experiment_id: int, histograms: bool = False):
    return runs.metrics_of(experiment_for_user(request.user, experiment_id), histograms)


@router.get("/experiments/{experiment_id}/logs/", response=dict)
def get_logs(request, experiment_id: int, stage: str | None = None,
             tail: int = Query(runs.LOG_TAIL_DEFAULT, ge=1, le=runs.LOG_TAIL_MAX)):
    return runs.logs_of(experiment_for_user(request.user, experiment_id), stage, tail)


@router.get("/experiments/{experiment_id}/statistics/", response=dict)
def get_statistics(request, experiment_id: int):
    return runs.statistics_of(experiment_for_user(request.user, experiment_id))


@router.get("/experiments/{experiment_id}/schema/", response=dict)
def get_schema(request, experiment_id: int):
    return runs.schema_of(experiment_for_user(request.user, experiment_id))
