"""Experiments (quick tests) through the API: create, list, best experiments, view, cancel, delete, promote.

An experiment shares the training run's record, queue and outputs, so the
answers have the training run's shapes (the spec's view modal is one module
with an "experiment" mode), made by the training presenters and outputs.
"""

from __future__ import annotations

from ninja import Body, Query, Router, Schema, Status
from pydantic import Field

from ml_pipeline.spec import EvaluatorConfig, SplitConfig, TrainingParams
from ml_platform.audit import services as audit
from ml_platform.core.errors import refusals
from ml_platform.core.fields import PAGE_MAX, Id
from ml_platform.experiments import services as experiment_services
from ml_platform.projects.access import project_for_user
from ml_platform.training import outputs, presenters, services
from ml_platform.training.access import run_for_user
from ml_platform.training.models import TrainingRun
from ml_platform.training.schemas import (
    LogName,
    LogsOut,
    MetricsOut,
    ModelTypeName,
    RerunIn,
    RunDetail,
    RunInput,
    RunPage,
    SchemaOut,
    StatisticsOut,
)
from ml_platform.training.services import GpuConfig, ScheduleConfig

router = Router(tags=["experiments"])
EXPERIMENT = TrainingRun.EXPERIMENT


class ExperimentIn(RunInput):
    name: str = Field("", max_length=200, description="An optional label ('bigger embeddings')")
    description: str = ""
    dataset_id: int
    feature_config_id: int
    model_config_id: int
    split_config: SplitConfig = Field(SplitConfig(), description="Usually a sample (sample_percent)")
    training_params: TrainingParams = TrainingParams()
    gpu_config: GpuConfig = GpuConfig()
    evaluator_config: EvaluatorConfig = EvaluatorConfig()


class PromoteIn(RunInput):
    """The training run made from the experiment: its configurations as tested, on all the data by default."""

    name: str = Field(min_length=1, max_length=200, description="The registered model's name")
    description: str = ""
    split_config: SplitConfig = Field(
        SplitConfig(), description="The fields sent are merged over the experiment's (sample_percent defaults to 100)"
    )
    training_params: TrainingParams = Field(
        TrainingParams(), description="The fields sent are merged over the experiment's"
    )
    gpu_config: GpuConfig = GpuConfig()
    evaluator_config: EvaluatorConfig = EvaluatorConfig()
    schedule_config: ScheduleConfig = ScheduleConfig()


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
    model_type: ModelTypeName
    count: int
    completed: int
    kpis: list[KpiOut]
    main_metric: str
    top: list[TopConfigurationOut]


def experiment_for_user(user, experiment_id: int, *related: str) -> TrainingRun:
    return run_for_user(user, experiment_id, *related, kind=EXPERIMENT)


@router.post("/projects/{project_id}/experiments/", response={201: RunDetail, **refusals(400, 404, 422)}, by_alias=True)
def create_experiment(request, project_id: int, payload: ExperimentIn):
    """Validate and queue a quick test (the pipeline without the Pusher)."""
    project = project_for_user(request.user, project_id)
    experiment = services.create_experiment(project, request.user, **payload.fields_sent())
    audit.record(
        request, audit.Action.CREATE, experiment, changes=payload.model_dump(mode="json", exclude_defaults=True)
    )
    return Status(201, presenters.detail_of(experiment.pk))


@router.get("/projects/{project_id}/experiments/", response={200: RunPage, **refusals(404, 422)})
def list_experiments(
    request,
    project_id: int,
    status: str | None = Query(None, description=presenters.STATUS_FILTER),
    model_type: str | None = Query(None, description=presenters.MODEL_TYPE_FILTER),
    dataset_id: Id | None = None,
    search: str | None = None,
    page: int = Query(1, ge=1, le=PAGE_MAX),
    page_size: int = Query(20, ge=1, le=100),
):
    """Newest first."""
    project = project_for_user(request.user, project_id)
    found = presenters.filtered_runs(
        project, EXPERIMENT, status=status, model_type=model_type, dataset_id=dataset_id, search=search
    )
    return presenters.run_page(found, page, page_size)


@router.get("/projects/{project_id}/experiments/best/", response={200: list[ModelTypeBestOut], **refusals(404, 422)})
def best_experiments(request, project_id: int, dataset_id: Id | None = None):
    """Per model type (retrieval, ranking, hybrid): a KPI row and the top 10 configurations
    (of one dataset's experiments with ``dataset_id``)."""
    return experiment_services.best_experiments(project_for_user(request.user, project_id), dataset_id)


@router.get("/experiments/{experiment_id}/", response={200: RunDetail, **refusals(404, 422)}, by_alias=True)
def get_experiment(request, experiment_id: int):
    return presenters.run_detail(experiment_for_user(request.user, experiment_id, *presenters.DETAIL_RELATED))


@router.post(
    "/experiments/{experiment_id}/cancel/", response={200: RunDetail, **refusals(404, 409, 422)}, by_alias=True
)
def cancel_experiment(request, experiment_id: int):
    """A queued experiment is cancelled at once; a running one is stopped by its worker within seconds."""
    experiment = services.request_cancel(experiment_for_user(request.user, experiment_id))
    audit.record(request, audit.Action.CANCEL, experiment, changes={"status": experiment.status})
    return presenters.detail_of(experiment.pk)


@router.delete("/experiments/{experiment_id}/", response={204: None, **refusals(404, 409, 422)})
def delete_experiment(request, experiment_id: int):
    """Finished experiments only (409 otherwise); their artifacts go too."""
    experiment = experiment_for_user(request.user, experiment_id)
    with audit.recording(request, audit.Action.DELETE, experiment):
        services.delete_run(experiment)
    return Status(204, None)


@router.post(
    "/experiments/{experiment_id}/rerun/", response={201: RunDetail, **refusals(400, 404, 409, 422)}, by_alias=True
)
def rerun_experiment(request, experiment_id: int, payload: Body[RerunIn | None] = None):
    """The same experiment again, or edited (the body as for a training run's rerun)."""
    experiment = experiment_for_user(request.user, experiment_id)
    changes = payload.fields_sent() if payload else {}
    new = services.rerun(experiment, request.user, from_stage=changes.pop("from_stage", None), changes=changes)
    audit.record(
        request,
        audit.Action.RERUN,
        new,
        changes={
            "rerun_of": experiment.pk,
            "from_stage": new.from_stage,
            "changed": [d["field"] for d in new.config_diff],
        },
    )
    return Status(201, presenters.detail_of(new.pk))


@router.post(
    "/experiments/{experiment_id}/promote/", response={201: RunDetail, **refusals(400, 404, 422)}, by_alias=True
)
def promote_experiment(request, experiment_id: int, payload: PromoteIn):
    """Start a training run from the experiment (as ``POST /projects/{id}/training-runs/`` with ``experiment_id``)."""
    experiment = experiment_for_user(request.user, experiment_id)
    run = services.create_training_run(
        experiment.project, request.user, experiment_id=experiment.pk, **payload.fields_sent()
    )
    audit.record(
        request,
        audit.Action.PROMOTE,
        run,
        changes={"experiment_id": experiment.pk, **payload.model_dump(mode="json", exclude_defaults=True)},
    )
    return Status(201, presenters.detail_of(run.pk))


@router.get(
    "/experiments/{experiment_id}/metrics/", response={200: MetricsOut, **refusals(404, 422)}, exclude_unset=True
)
def get_metrics(request, experiment_id: int, histograms: bool = False):
    return outputs.metrics_of(experiment_for_user(request.user, experiment_id), histograms)


@router.get("/experiments/{experiment_id}/logs/", response={200: LogsOut, **refusals(404, 422)}, exclude_unset=True)
def get_logs(
    request,
    experiment_id: int,
    stage: LogName | None = None,
    tail: int = Query(outputs.LOG_TAIL_DEFAULT, ge=1, le=outputs.LOG_TAIL_MAX),
):
    return outputs.logs_of(experiment_for_user(request.user, experiment_id), stage, tail)


@router.get("/experiments/{experiment_id}/statistics/", response={200: StatisticsOut, **refusals(404, 422)})
def get_statistics(request, experiment_id: int):
    return outputs.statistics_of(experiment_for_user(request.user, experiment_id))


@router.get("/experiments/{experiment_id}/schema/", response={200: SchemaOut, **refusals(404, 422)}, by_alias=True)
def get_schema(request, experiment_id: int):
    return outputs.schema_of(experiment_for_user(request.user, experiment_id))
