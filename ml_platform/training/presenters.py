"""Runs and experiments as the API and the pages show them: the view modal's detail, the list's compact
cards (one page at a time), the stage table, the artifact list and the saved parameters.

Presenters read the database only; what a run wrote to its folder is ``outputs``'s. A run's dataset
snapshot is shown with its database password masked (``ml_pipeline.redact``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db.models import F, Q

from ml_pipeline.blessing import advice as blessing_advice
from ml_pipeline.metrics import SPLITS
from ml_pipeline.metrics import metric_split as split_of
from ml_pipeline.redact import redact
from ml_pipeline.spec import STAGES, StageStatus
from ml_platform.core.filters import comma_choices
from ml_platform.registry.models import RegisteredModel
from ml_platform.training import rules
from ml_platform.training.models import RunStatus, TrainingRun
from ml_platform.training.schemas import ArtifactOut
from ml_platform.training.services import EDITABLE

STATUSES = tuple(RunStatus.values)
MODEL_TYPES = tuple(t for t, _ in RegisteredModel.MODEL_TYPES)
# The list filters' descriptions in OpenAPI (a filter takes several values, so it is no enum).
STATUS_FILTER = f"One or several of {', '.join(STATUSES)}, comma-separated"
MODEL_TYPE_FILTER = f"One or several of {', '.join(MODEL_TYPES)}, comma-separated"
DETAIL_RELATED = (
    "dataset",
    "feature_config",
    "model_config",
    "registered_model",
    "rerun_of",
    "source_experiment",
    "created_by",
)
ERROR_SHOWN = 300  # characters of a failed run's error a card shows


def _ref(run: TrainingRun | None) -> dict | None:
    if run is None:
        return None
    return {"id": run.pk, "kind": run.kind, "run_number": run.run_number, "name": run.name, "display_name": str(run)}


def stage_table(run: TrainingRun) -> list[dict]:
    table = []
    for name in STAGES:
        entry = (run.stages or {}).get(name) or {}
        table.append(
            {
                "name": name,
                "status": entry.get("status", StageStatus.PENDING),
                "started_at": entry.get("started_at"),
                "ended_at": entry.get("ended_at"),
                "summary": entry.get("summary"),
            }
        )
    return table


def remote_job_of(run: TrainingRun) -> dict | None:
    """The run's job on Kubeflow or Vertex AI (``schemas.RemoteJobOut``), with the Trainer's GPU attempts."""
    from ml_platform.runners.models import RemoteJob

    job = RemoteJob.objects.filter(run_id=run.pk).first() if run.is_remote else None
    if job is None:
        return None
    fields = ("backend", "state", "service_state", "resource_name", "console_url", "error", "submitted_at")
    return {
        **{name: getattr(job, name) for name in fields},
        "checked_at": job.checked_at,
        "trainer_attempts": ((run.stages or {}).get("Trainer") or {}).get("attempts", []),
    }


def artifact_list(run: TrainingRun) -> list[dict]:
    found = run.artifacts or {}
    return [
        {
            "stage": stage,
            **{k: v for k, v in found[stage].items() if k in ArtifactOut.model_fields},
            "producer": found[stage].get("producer") or stage,
        }
        for stage in STAGES
        if stage in found
    ]


def run_detail(run: TrainingRun) -> dict:
    """Everything the view modal shows (``schemas.RunDetail``)."""
    registered = run.registered_model
    return {
        **{
            f: getattr(run, f)
            for f in (
                "id",
                "project_id",
                "kind",
                "run_number",
                "name",
                "description",
                "model_type",
                "status",
                "is_terminal",
                "current_stage",
                "current_epoch",
                "total_epochs",
                "cancel_requested",
                "attempts",
                "runner",
                "last_event_at",
                "feature_config_snapshot",
                "model_config_snapshot",
                "split_config",
                "training_params",
                "gpu_config",
                "evaluator_config",
                "schedule_config",
                "final_metrics",
                "blessed",
                "blessing_reasons",
                "resources",
                "duration_seconds",
                "from_stage",
                "config_diff",
                "mlflow_run_id",
                "created_at",
                "updated_at",
                "started_at",
                "completed_at",
            )
        },
        "display_name": str(run),
        "metric_splits": final_metric_splits(run.final_metrics or {}),
        # an experiment is never pushed: its verdict is advice for the training run it may become
        "advice": blessing_advice(run.blessed, run.blessing_reasons or []) if run.is_experiment else None,
        "dataset_snapshot": redact(run.dataset_snapshot),
        "stages": stage_table(run),
        "remote_job": remote_job_of(run),
        "dataset": {
            "id": run.dataset_id,
            "name": run.dataset.name if run.dataset else (run.dataset_snapshot or {}).get("name"),
        },
        "feature_config": {
            "id": run.feature_config_id,
            "name": run.feature_config.name if run.feature_config else None,
        },
        "model_config": {"id": run.model_config_id, "name": run.model_config.name if run.model_config else None},
        "artifacts": artifact_list(run),
        "cost_usd": float(run.cost()),
        "error": (
            {"message": run.error_message, "stage": run.error_stage, "traceback": run.error_traceback}
            if run.error_message or run.error_stage
            else None
        ),
        "registered_model": registered,
        "registered_model_name": registered.name if registered else run.name,
        "rerun_of": _ref(run.rerun_of),
        "source_experiment": _ref(run.source_experiment),
        "schedule": fired_by_schedule(run),
        "data_window": data_window(run.spec),
        "created_by": run.created_by.get_username() if run.created_by else None,
    }


def detail_of(run_id: int) -> dict:
    """The detail of a run as it is in the database now (after a change)."""
    return run_detail(TrainingRun.objects.select_related("project", *DETAIL_RELATED).get(pk=run_id))


def config_of(run: TrainingRun, updated: list[str] | None = None) -> dict:
    """The run's saved parameters (``schemas.RunConfigOut``): what a rerun or a schedule will use."""
    return {
        **{
            f: getattr(run, f)
            for f in (
                "id",
                "name",
                "status",
                "dataset_id",
                "feature_config_id",
                "model_config_id",
                "training_params",
                "gpu_config",
                "evaluator_config",
                "schedule_config",
            )
        },
        "editable": run.status in EDITABLE,
        "updated_fields": updated or [],
    }


def filtered_runs(
    project, kind: str, *, status: str | None, model_type: str | None, dataset_id: int | None, search: str | None
):
    """The project's runs (or experiments) the list's filters keep; ``status`` and ``model_type`` take one value
    or several, comma-separated (422 naming the query field for an unknown one)."""
    runs = TrainingRun.objects.filter(project=project, kind=kind)
    if statuses := comma_choices("status", status, STATUSES):
        runs = runs.filter(status__in=statuses)
    if model_types := comma_choices("model_type", model_type, MODEL_TYPES):
        runs = runs.filter(model_type__in=model_types)
    if dataset_id is not None:
        runs = runs.filter(dataset_id=dataset_id)
    if search and search.strip():
        term = search.strip()
        runs = runs.filter(Q(name__icontains=term) | Q(description__icontains=term))
    return runs


def run_page(runs, page: int, page_size: int) -> dict:
    """One page of compact cards, newest first, and the total count.

    Two queries per page whatever its size (a count and the page's rows), and only the columns a card
    shows: the headline metrics and the stage bar are read out of the JSON columns by the database.
    """
    count = runs.count()
    start = (page - 1) * page_size
    # The page's ids in a subquery (answered from the (project, -created_at) index), then only those rows'
    # columns: an OFFSET no longer reads and parses the JSON columns of every row it skips.
    page_ids = runs.values("pk")[start : start + page_size]
    rows = (
        TrainingRun.objects.filter(pk__in=page_ids).values(
            "id",
            "kind",
            "run_number",
            "name",
            "model_type",
            "status",
            "current_stage",
            "current_epoch",
            "total_epochs",
            "blessed",
            "created_at",
            "started_at",
            "completed_at",
            "cost_usd",
            "error_message",
            "error_stage",
            "dataset_id",
            "feature_config_id",
            "model_config_id",
            "registry_version",
            "registered_model_id",
            feature_config_name=F("feature_config__name"),
            model_config_name=F("model_config__name"),
            deployed_version=F("registered_model__deployed_version"),
            # a run has at most one firing (the schedule occurrence that made it): no duplicated rows
            fired_schedule_id=F("firings__schedule_id"),
            fired_schedule_name=F("firings__schedule__name"),
            fired_for=F("firings__scheduled_for"),
            fired_trigger=F("firings__trigger"),
            serving_uri=F("artifacts__Pusher__uri"),
            recall_at_100=F("final_metrics__recall_at_100"),
            rmse=F("final_metrics__rmse"),
            holdout=F("final_metrics__holdout"),
            gpu_type=F("gpu_config__gpu_type"),
            gpu_count=F("gpu_config__gpu_count"),
            dataset_name=F("dataset_snapshot__name"),
            **{f"stage_{i}": F(f"stages__{stage}__status") for i, stage in enumerate(STAGES)},
        )
        if start < count
        else []
    )
    return {"count": count, "page": page, "page_size": page_size, "results": [_list_item(row) for row in rows]}


def _list_item(row: dict) -> dict:
    status = row["status"]
    started, completed = row.pop("started_at"), row.pop("completed_at")
    shell = TrainingRun(
        kind=row["kind"],
        run_number=row["run_number"],
        name=row["name"],
        status=status,
        started_at=started,
        completed_at=completed,
        cost_usd=row.pop("cost_usd"),
        gpu_config={"gpu_type": row["gpu_type"], "gpu_count": row["gpu_count"] or 0},
    )
    stages = {stage: row.pop(f"stage_{i}") or StageStatus.PENDING for i, stage in enumerate(STAGES)}
    error = row.pop("error_message") or ""
    actions = rules.allowed(rules.RunState.from_row(row))
    row.pop("serving_uri")
    deployed = row.pop("deployed_version")
    fired = [row.pop(k) for k in ("fired_schedule_id", "fired_schedule_name", "fired_for", "fired_trigger")]
    return {
        **row,
        "schedule": schedule_origin(*fired),
        "actions": actions,
        "deployed": row["registry_version"] is not None and deployed == row["registry_version"],
        "metric_split": metric_split(stages, row.pop("holdout")),
        "display_name": str(shell),
        "stages": stages,
        "gpu_count": row["gpu_count"] or 0,
        "recall_at_100": _number(row["recall_at_100"]),
        "rmse": _number(row["rmse"]),
        "error_message": error if len(error) <= ERROR_SHOWN else error[: ERROR_SHOWN - 3] + "...",
        "duration_seconds": shell.duration_seconds,
        "cost_usd": float(shell.cost()),
    }


def schedule_origin(schedule_id, name, scheduled_for, trigger) -> dict | None:
    """The schedule that started a run (``schemas.ScheduleOrigin``), from its firing; None for a run made by hand."""
    if schedule_id is None:
        return None
    return {"id": schedule_id, "name": name, "scheduled_for": scheduled_for, "trigger": trigger}


def data_window(spec: dict | None) -> dict | None:
    """``schemas.DataWindow`` of a run's spec: its last N days, ending at ``dataset.as_of`` (naive UTC) if set."""
    dataset = (spec or {}).get("dataset") or {}
    days = (dataset.get("filters") or {}).get("last_days")
    if not days:
        return None
    ends = dataset.get("as_of")
    return {"last_days": days, "ends_at": datetime.fromisoformat(ends).replace(tzinfo=UTC) if ends else None}


def fired_by_schedule(run: TrainingRun) -> dict | None:
    """A run's schedule origin, read through its firing (the run itself has no column for it)."""
    values = ("schedule_id", "schedule__name", "scheduled_for", "trigger")
    found = run.firings.values_list(*values).first() if run.pk else None
    return schedule_origin(*found) if found else None


def metric_split(stages: dict[str, str], holdout: str | None) -> str:
    """The split a run's final metrics were measured on: the Evaluator's held-out split once it has run
    (test, or eval when the run has no test rows), else the Trainer's per-epoch validation (eval)."""
    if stages.get("Evaluator") not in (StageStatus.COMPLETED, StageStatus.CACHED):
        return "eval"
    return holdout if holdout in SPLITS else "test"


def final_metric_splits(final_metrics: dict) -> dict[str, str]:
    """metric -> the split it was measured on, for every metric of a run's final metrics."""
    holdout = final_metrics.get("holdout")
    evaluated_on = holdout if holdout in SPLITS else None
    splits = {name: split_of(name, evaluated_on) for name in final_metrics}
    return {name: split for name, split in splits.items() if split is not None}


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
