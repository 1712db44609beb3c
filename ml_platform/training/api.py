"""Training runs through the API: create, list, view, cancel, delete, rerun, edit, compare, and what a run
produced.

Routes only: the rules are ``services``'s, the answers' shapes ``presenters``'s, what a run wrote ``outputs``'s
and the bodies ``schemas``'s; the routes experiments have too (list, rerun, outputs) are ``routes``'s. The
audit trail is recorded here, where the request (who, from where) is.
"""

from __future__ import annotations

from ninja import Body, Query, Router, Schema, Status
from pydantic import Field

from ml_pipeline.errors import ConfigError, Problem
from ml_platform.audit import services as audit
from ml_platform.core.errors import NotFound, refusals
from ml_platform.core.fields import Id
from ml_platform.core.filters import comma_ids
from ml_platform.projects.access import project_for_user
from ml_platform.training import comparison, estimates, presenters, routes, services
from ml_platform.training.access import run_for_user
from ml_platform.training.models import TrainingRun
from ml_platform.training.schemas import (
    ComparisonOut,
    ModelTypeName,
    RerunIn,
    RunConfigOut,
    RunConfigPatch,
    RunDetail,
    TrainingRunIn,
    VersusExperimentOut,
)
from ml_platform.training.services import GpuType

router = Router(tags=["training"])


@router.post(
    "/projects/{project_id}/training-runs/", response={201: RunDetail, **refusals(400, 404, 422)}, by_alias=True
)
def create_training_run(request, project_id: int, payload: TrainingRunIn):
    """Validate the whole run (configs, parameters, the source's columns) and queue it."""
    project = project_for_user(request.user, project_id)
    run = services.create_training_run(project, request.user, **payload.fields_sent())
    audit.record(request, audit.Action.CREATE, run, changes=payload.model_dump(mode="json", exclude_defaults=True))
    return Status(201, presenters.detail_of(run.pk))


routes.add_list_route(
    router,
    "/projects/{project_id}/training-runs/",
    kind=TrainingRun.TRAINING,
    operation_id="ml_platform_training_api_list_training_runs",
    summary="List Training Runs",
    description="""Newest first.

Two queries per page whatever its size (a count and the page's rows), and
only the columns a card shows: the headline metrics and the stage bar are
read out of the JSON columns by the database.""",
)


class EstimateOut(Schema):
    model_type: ModelTypeName
    rows: int | None = Field(description="The dataset's rows (its preview's count), None before a preview")
    epochs: int
    examples: int | None = Field(description="Examples the run would train on: rows x sample share x epochs")
    based_on_runs: int = Field(description="Finished runs and experiments of this model type that measured it")
    examples_per_second: float | None = Field(description="Their mean Trainer throughput")
    seconds: float | None
    cost_usd: float | None = Field(description="From the GPU price table, as a run's cost")
    basis: str = Field(description="What the figures are based on, in words (or that there is no history yet)")


@router.get("/projects/{project_id}/training-runs/estimate/", response={200: EstimateOut, **refusals(404, 422)})
def estimate_training_run(
    request,
    project_id: int,
    experiment_id: Id | None = None,
    dataset_id: Id | None = None,
    model_config_id: Id | None = None,
    epochs: int = Query(10, ge=1, le=10_000),
    sample_percent: float | None = Query(None, gt=0, le=100),
    gpu_type: GpuType | None = None,
    gpu_count: int = Query(0, ge=0, le=16),
):
    """Estimated duration and cost of a run, from this project's measured throughput of earlier runs of the
    same model type (examples/s, scaled by rows x epochs; the cost from the price table)."""
    project = project_for_user(request.user, project_id)
    return estimates.estimate_for(
        project,
        experiment_id=experiment_id,
        dataset_id=dataset_id,
        model_config_id=model_config_id,
        epochs=epochs,
        sample_percent=sample_percent,
        gpu_type=gpu_type,
        gpu_count=gpu_count,
    ).as_dict()


# Registered before "/training-runs/{run_id}/": the first matching path wins, and "compare" is no run id.
@router.get("/training-runs/compare/", response={200: ComparisonOut, **refusals(404, 422)})
def compare_runs(request, ids: str = Query(..., description="Two to ten run or experiment ids, comma-separated")):
    """Runs (and experiments) side by side: every config leaf (differences marked), final metrics (the best
    one named), and per-epoch learning curves to overlay."""
    wanted = comma_ids("ids", ids, what="run ids")
    if not 2 <= len(wanted) <= comparison.MAX_COMPARED:
        raise ConfigError(Problem("ids", f"give between 2 and {comparison.MAX_COMPARED} different runs"))
    runs = [run_for_user(request.user, run_id, kind=None) for run_id in wanted]
    return comparison.compare(runs)


@router.get("/training-runs/{run_id}/", response={200: RunDetail, **refusals(404, 422)}, by_alias=True)
def get_training_run(request, run_id: int):
    """Everything the view modal shows: stage table, epochs, outcome, lineage, cost, error, snapshots."""
    return presenters.run_detail(run_for_user(request.user, run_id, *presenters.DETAIL_RELATED))


@router.post("/training-runs/{run_id}/cancel/", response={200: RunDetail, **refusals(404, 409, 422)}, by_alias=True)
def cancel_training_run(request, run_id: int):
    """A queued run is cancelled at once; a running one is stopped by its worker within seconds."""
    return routes.cancel(request, run_for_user(request.user, run_id))


@router.delete("/training-runs/{run_id}/", response={204: None, **refusals(404, 409, 422)})
def delete_training_run(request, run_id: int):
    """Finished runs only (409 otherwise); the run's artifacts folder goes too."""
    return routes.delete(request, run_for_user(request.user, run_id))


@router.post("/training-runs/{run_id}/rerun/", response={201: RunDetail, **refusals(400, 404, 409, 422)}, by_alias=True)
def rerun_training_run(request, run_id: int, payload: Body[RerunIn | None] = None):
    """A new run (next run number, same name and configs) from a finished one; 409 while it is not finished.

    The body may edit the copy (sections replace the original's; ids take fresh snapshots) and name a
    ``from_stage`` to recompute from; earlier stages are reused when their fingerprints still match. The new
    run's ``config_diff`` lists what changed.
    """
    return Status(201, presenters.detail_of(routes.rerun(request, run_for_user(request.user, run_id), payload).pk))


@router.get("/training-runs/{run_id}/vs-experiment/", response={200: VersusExperimentOut, **refusals(404, 422)})
def results_vs_experiment(request, run_id: int):
    """The run's final metrics against the experiment it was promoted from: values, deltas, improved or not."""
    run = run_for_user(request.user, run_id, "source_experiment")
    if run.source_experiment is None:
        raise NotFound("This run was not promoted from an experiment (or the experiment was deleted)")
    return comparison.against_experiment(run)


# --------------------------------------------------------------------------- progress and outputs


routes.add_output_routes(
    router,
    prefix="/training-runs",
    param="run_id",
    kind=TrainingRun.TRAINING,
    module="ml_platform_training_api",
    docs={
        "metrics": """One row per epoch (loss, val_loss, Recall@K, RMSE/MAE, every other scalar, resources).

Weight histograms are large: only with ``?histograms=true``.""",
        "logs": """Each stage's ``stage.log`` (the last ``tail`` lines), in pipeline order, and the worker's log.

``?stage=Trainer`` answers one stage's log; ``?stage=worker`` only the worker's.""",
        "statistics": "StatisticsGen's summary (per split: every column's counts, missing share, moments or top values).",
        "schema": "SchemaGen's schema (the TFDV ``Schema`` as JSON, and a feature table) and the anomalies it found.",
    },
)


# --------------------------------------------------------------------------- editing


@router.get("/training-runs/{run_id}/config/", response={200: RunConfigOut, **refusals(404, 422)})
def get_config(request, run_id: int):
    """The run's saved parameters (what a rerun or a schedule will use)."""
    return presenters.config_of(run_for_user(request.user, run_id))


@router.patch("/training-runs/{run_id}/config/", response={200: RunConfigOut, **refusals(400, 404, 409, 422)})
def update_config(request, run_id: int, payload: RunConfigPatch):
    """Edit a finished or scheduled run's parameters; checked by rebuilding its spec (422 names the field)."""
    run = run_for_user(request.user, run_id)
    updated = services.update_config(run, payload.fields_sent())
    audit.record(request, audit.Action.UPDATE, run, changes=payload.fields_sent())
    return presenters.config_of(run, updated=updated)
