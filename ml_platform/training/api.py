"""Training runs through the API: create, list, view, cancel, delete, rerun, edit, compare, and what a run
produced.

Routes only: the rules are ``services``'s, the answers' shapes ``presenters``'s, what a run wrote ``outputs``'s
and the bodies ``schemas``'s. The audit trail is recorded here, where the request (who, from where) is.
"""

from __future__ import annotations

from ninja import Body, Query, Router, Status

from ml_pipeline.errors import ConfigError, Problem
from ml_platform.audit import services as audit
from ml_platform.core.errors import NotFound, refusals
from ml_platform.core.fields import PAGE_MAX, Id
from ml_platform.core.filters import comma_ids
from ml_platform.projects.access import project_for_user
from ml_platform.training import comparison, outputs, presenters, services
from ml_platform.training.access import run_for_user
from ml_platform.training.models import TrainingRun
from ml_platform.training.schemas import (
    ComparisonOut,
    LogName,
    LogsOut,
    MetricsOut,
    RerunIn,
    RunConfigOut,
    RunConfigPatch,
    RunDetail,
    RunPage,
    SchemaOut,
    StatisticsOut,
    TrainingRunIn,
    VersusExperimentOut,
)

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


@router.get("/projects/{project_id}/training-runs/", response={200: RunPage, **refusals(404, 422)})
def list_training_runs(
    request,
    project_id: int,
    status: str | None = Query(None, description=presenters.STATUS_FILTER),
    model_type: str | None = Query(None, description=presenters.MODEL_TYPE_FILTER),
    dataset_id: Id | None = None,
    search: str | None = None,
    page: int = Query(1, ge=1, le=PAGE_MAX),
    page_size: int = Query(20, ge=1, le=100),
):
    """Newest first.

    Two queries per page whatever its size (a count and the page's rows), and
    only the columns a card shows: the headline metrics and the stage bar are
    read out of the JSON columns by the database.
    """
    project = project_for_user(request.user, project_id)
    runs = presenters.filtered_runs(
        project, TrainingRun.TRAINING, status=status, model_type=model_type, dataset_id=dataset_id, search=search
    )
    return presenters.run_page(runs, page, page_size)


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
    run = services.request_cancel(run_for_user(request.user, run_id))
    audit.record(request, audit.Action.CANCEL, run, changes={"status": run.status})
    return presenters.detail_of(run.pk)


@router.delete("/training-runs/{run_id}/", response={204: None, **refusals(404, 409, 422)})
def delete_training_run(request, run_id: int):
    """Finished runs only (409 otherwise); the run's artifacts folder goes too."""
    run = run_for_user(request.user, run_id)
    with audit.recording(request, audit.Action.DELETE, run):
        services.delete_run(run)
    return Status(204, None)


@router.post("/training-runs/{run_id}/rerun/", response={201: RunDetail, **refusals(400, 404, 409, 422)}, by_alias=True)
def rerun_training_run(request, run_id: int, payload: Body[RerunIn | None] = None):
    """A new run (next run number, same name and configs) from a finished one; 409 while it is not finished.

    The body may edit the copy (sections replace the original's; ids take fresh snapshots) and name a
    ``from_stage`` to recompute from; earlier stages are reused when their fingerprints still match. The new
    run's ``config_diff`` lists what changed.
    """
    return Status(201, presenters.detail_of(rerun(request, run_for_user(request.user, run_id), payload).pk))


def rerun(request, run: TrainingRun, payload: RerunIn | None) -> TrainingRun:
    """The rerun of a run or an experiment, recorded in the audit trail."""
    changes = payload.fields_sent() if payload else {}
    new = services.rerun(run, request.user, from_stage=changes.pop("from_stage", None), changes=changes)
    audit.record(
        request,
        audit.Action.RERUN,
        new,
        changes={"rerun_of": run.pk, "from_stage": new.from_stage, "changed": [d["field"] for d in new.config_diff]},
    )
    return new


@router.get("/training-runs/{run_id}/vs-experiment/", response={200: VersusExperimentOut, **refusals(404, 422)})
def results_vs_experiment(request, run_id: int):
    """The run's final metrics against the experiment it was promoted from: values, deltas, improved or not."""
    run = run_for_user(request.user, run_id, "source_experiment")
    if run.source_experiment is None:
        raise NotFound("This run was not promoted from an experiment (or the experiment was deleted)")
    return comparison.against_experiment(run)


# --------------------------------------------------------------------------- progress and outputs


@router.get("/training-runs/{run_id}/metrics/", response={200: MetricsOut, **refusals(404, 422)}, exclude_unset=True)
def get_metrics(request, run_id: int, histograms: bool = False):
    """One row per epoch (loss, val_loss, Recall@K, RMSE/MAE, every other scalar, resources).

    Weight histograms are large: only with ``?histograms=true``.
    """
    return outputs.metrics_of(run_for_user(request.user, run_id), histograms)


@router.get("/training-runs/{run_id}/logs/", response={200: LogsOut, **refusals(404, 422)}, exclude_unset=True)
def get_logs(
    request,
    run_id: int,
    stage: LogName | None = None,
    tail: int = Query(outputs.LOG_TAIL_DEFAULT, ge=1, le=outputs.LOG_TAIL_MAX),
):
    """Each stage's ``stage.log`` (the last ``tail`` lines), in pipeline order, and the worker's log.

    ``?stage=Trainer`` answers one stage's log; ``?stage=worker`` only the worker's.
    """
    return outputs.logs_of(run_for_user(request.user, run_id), stage, tail)


@router.get("/training-runs/{run_id}/statistics/", response={200: StatisticsOut, **refusals(404, 422)})
def get_statistics(request, run_id: int):
    """StatisticsGen's summary (per split: every column's counts, missing share, moments or top values)."""
    return outputs.statistics_of(run_for_user(request.user, run_id))


@router.get("/training-runs/{run_id}/schema/", response={200: SchemaOut, **refusals(404, 422)}, by_alias=True)
def get_schema(request, run_id: int):
    """SchemaGen's schema (the TFDV ``Schema`` as JSON, and a feature table) and the anomalies it found."""
    return outputs.schema_of(run_for_user(request.user, run_id))


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
