"""The routes the training-run and experiment APIs share: an experiment is a training run of another kind
(same record, queue and outputs), so these differ only in their paths, the kind a run is looked up as and
their documentation, and are written once here for both routers.
"""

from __future__ import annotations

from django.http import FileResponse
from ninja import Path, Query, Router, Status

from ml_platform.audit import services as audit
from ml_platform.core.errors import refusals
from ml_platform.core.fields import PAGE_MAX, Id
from ml_platform.projects.access import project_for_user
from ml_platform.training import outputs, presenters, services
from ml_platform.training.access import run_for_user
from ml_platform.training.models import TrainingRun
from ml_platform.training.schemas import LogName, LogsOut, MetricsOut, RerunIn, RunPage, SchemaOut, StatisticsOut


def cancel(request, run: TrainingRun) -> dict:
    """Cancel a run or an experiment (409 once it has finished), recorded in the audit trail; its detail."""
    run = services.request_cancel(run)
    audit.record(request, audit.Action.CANCEL, run, changes={"status": run.status})
    return presenters.detail_of(run.pk)


def delete(request, run: TrainingRun) -> Status:
    """Delete a finished run or experiment and its artifacts, recorded in the audit trail."""
    with audit.recording(request, audit.Action.DELETE, run):
        services.delete_run(run)
    return Status(204, None)


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


def add_list_route(router: Router, path: str, *, kind: str, operation_id: str, summary: str, description: str) -> None:
    """``GET path``: a project's runs of ``kind``, newest first, filtered and paged."""

    @router.get(
        path,
        response={200: RunPage, **refusals(404, 422)},
        operation_id=operation_id,
        summary=summary,
        description=description,
    )
    def list_runs(
        request,
        project_id: int,
        status: str | None = Query(None, description=presenters.STATUS_FILTER),
        model_type: str | None = Query(None, description=presenters.MODEL_TYPE_FILTER),
        dataset_id: Id | None = None,
        search: str | None = None,
        page: int = Query(1, ge=1, le=PAGE_MAX),
        page_size: int = Query(20, ge=1, le=100),
    ):
        project = project_for_user(request.user, project_id)
        found = presenters.filtered_runs(
            project, kind, status=status, model_type=model_type, dataset_id=dataset_id, search=search
        )
        return presenters.run_page(found, page, page_size)


def add_output_routes(
    router: Router, *, prefix: str, param: str, kind: str, module: str, docs: dict[str, str] | None = None
) -> None:
    """``GET prefix/{param}/metrics|logs|statistics|schema/``: what a run of ``kind`` produced, and
    ``logs/{name}/download/``: one whole log, streamed.

    ``module`` keeps the operations' ids as they were when each API module wrote these routes itself;
    ``docs`` gives an operation's description by its name.
    """
    docs = docs or {}

    def run_of(request, run_id: int) -> TrainingRun:
        return run_for_user(request.user, run_id, kind=kind)

    def route(name: str, response, **options):
        return router.get(
            f"{prefix}/{{{param}}}/{name}/",
            response={200: response, **refusals(404, 422)},
            operation_id=f"{module}_get_{name}",
            description=docs.get(name),
            **options,
        )

    @route("metrics", MetricsOut, exclude_unset=True)
    def get_metrics(request, run_id: int = Path(..., alias=param), histograms: bool = False):
        return outputs.metrics_of(run_of(request, run_id), histograms)

    @route("logs", LogsOut, exclude_unset=True)
    def get_logs(
        request,
        run_id: int = Path(..., alias=param),
        stage: LogName | None = None,
        tail: int = Query(outputs.LOG_TAIL_DEFAULT, ge=1, le=outputs.LOG_TAIL_MAX),
    ):
        return outputs.logs_of(run_of(request, run_id), stage, tail)

    @router.get(
        f"{prefix}/{{{param}}}/logs/{{name}}/download/",
        response=refusals(404, 422),
        operation_id=f"{module}_download_log",
        url_name=f"{module}_download_log",
        description="The whole log of a stage (``Trainer``…; a cached stage's is the run that produced it) or "
        "of the worker (``worker``), streamed as a text file to save.",
        openapi_extra={"responses": {200: {"description": "The log", "content": {"text/plain": {}}}}},
    )
    def download_log(request, name: LogName, run_id: int = Path(..., alias=param)):
        path, filename = outputs.log_file(run_of(request, run_id), name)
        return FileResponse(
            path.open("rb"), as_attachment=True, filename=filename, content_type="text/plain; charset=utf-8"
        )

    @route("statistics", StatisticsOut)
    def get_statistics(request, run_id: int = Path(..., alias=param)):
        return outputs.statistics_of(run_of(request, run_id))

    @route("schema", SchemaOut, by_alias=True)
    def get_schema(request, run_id: int = Path(..., alias=param)):
        return outputs.schema_of(run_of(request, run_id))
