"""Experiments (quick tests) through the API: create, list, best experiments, view, cancel, delete, promote.

An experiment shares the training run's record, queue and outputs, so the
answers have the training run's shapes (the spec's view modal is one module
with an "experiment" mode), made by the training presenters and outputs; the
routes that differ from a training run's only in kind are ``training.routes``'s.
"""

from __future__ import annotations

from typing import Literal

from ninja import Body, Router, Schema, Status
from pydantic import Field

from ml_pipeline.spec import EvaluatorConfig, SplitConfig, TrainingParams
from ml_platform.audit import services as audit
from ml_platform.core.errors import refusals
from ml_platform.core.fields import Id
from ml_platform.experiments import services as experiment_services
from ml_platform.projects.access import project_for_user
from ml_platform.training import presenters, routes, services
from ml_platform.training.access import run_for_user
from ml_platform.training.models import TrainingRun
from ml_platform.training.schemas import (
    ModelTypeName,
    RemoteRunnerName,
    RerunIn,
    RunDetail,
    RunInput,
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
    runner: RemoteRunnerName | None = Field(None, description="Where it runs; default: the project's runner")


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
    runner: RemoteRunnerName | None = Field(None, description="Where it runs; default: the project's runner")


class KpiOut(Schema):
    metric: str
    split: Literal["eval", "test"] = Field(
        description="eval: the best eval figure; test: the test figure of the experiment best on eval "
        "(experiments are chosen on eval, never on test)"
    )
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
    split: Literal["eval"] = Field(description="The split value was measured on (the Trainer's validation)")
    value: float
    loss: float | None
    advice: str | None = Field(description="The Evaluator's verdict as advice ('would not be blessed: ...')")


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


routes.add_list_route(
    router,
    "/projects/{project_id}/experiments/",
    kind=EXPERIMENT,
    operation_id="ml_platform_experiments_api_list_experiments",
    summary="List Experiments",
    description="Newest first.",
)


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
    return routes.cancel(request, experiment_for_user(request.user, experiment_id))


@router.delete("/experiments/{experiment_id}/", response={204: None, **refusals(404, 409, 422)})
def delete_experiment(request, experiment_id: int):
    """Finished experiments only (409 otherwise); their artifacts go too."""
    return routes.delete(request, experiment_for_user(request.user, experiment_id))


@router.post(
    "/experiments/{experiment_id}/rerun/", response={201: RunDetail, **refusals(400, 404, 409, 422)}, by_alias=True
)
def rerun_experiment(request, experiment_id: int, payload: Body[RerunIn | None] = None):
    """The same experiment again, or edited (the body as for a training run's rerun)."""
    new = routes.rerun(request, experiment_for_user(request.user, experiment_id), payload)
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


routes.add_output_routes(
    router, prefix="/experiments", param="experiment_id", kind=EXPERIMENT, module="ml_platform_experiments_api"
)
