"""Training runs through the API: create, list, view, cancel, delete, rerun, edit, and what a run produced.

Views stay thin: validation and state changes live in ``services``; this
module shapes answers (the view modal's detail, the list's compact cards)
and reads the run's files (stage logs, StatisticsGen's summary, SchemaGen's
schema) for the Data Insights and Logs tabs.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db.models import F, Q
from django.http import Http404
from django.urls import reverse
from google.protobuf import json_format, text_format
from ninja import Body, Query, Router, Schema, Status
from pydantic import Field
from tensorflow_metadata.proto.v0 import schema_pb2

from ml_platform.audit import services as audit
from ml_platform.core.fields import PAGE_MAX, Id
from ml_platform.core.filters import comma_choices, comma_ids
from ml_platform.core.errors import ApiError
from ml_platform.projects.access import project_for_user
from ml_platform.registry.models import RegisteredModel
from ml_platform.registry import services as registry_services
from ml_platform.training import comparison, services
from ml_platform.training.models import TrainingMetricsHistory, TrainingRun
from ml_pipeline.errors import ConfigError, Problem
from ml_pipeline.redact import redact
from ml_pipeline.spec import STAGES

router = Router(tags=["training"])

STATUSES = tuple(s for s, _ in TrainingRun.STATUSES)
MODEL_TYPES = tuple(t for t, _ in RegisteredModel.MODEL_TYPES)
# Runs whose parameters may still be edited: nothing is executing them.
EDITABLE = (*TrainingRun.TERMINAL, TrainingRun.SCHEDULED)
LOG_TAIL_DEFAULT, LOG_TAIL_MAX = 500, 20_000
WORKER_LOG = "worker"


# --------------------------------------------------------------------------- schemas


class TrainingRunIn(Schema):
    """From the catalog (the three ids) or from an experiment (``experiment_id``, promoted as it was tested)."""

    name: str = Field(min_length=1, max_length=200, description="The registered model's name")
    description: str = ""
    experiment_id: int | None = None
    dataset_id: int | None = None
    feature_config_id: int | None = None
    model_config_id: int | None = None
    # Each section is validated by the services (and the pipeline spec), so
    # problems name the run's fields: training_params.epochs, split_config.holdout_days, ...
    split_config: dict = {}
    training_params: dict = {}
    gpu_config: dict = {}
    evaluator_config: dict = {}
    schedule_config: dict = {}


class RerunIn(Schema):
    """Everything optional: an empty body reruns the same configuration from scratch (cached stages reused)."""

    from_stage: str | None = Field(None, description="Recompute from this stage on (Compile ... Pusher)")
    description: str | None = None
    dataset_id: int | None = None
    feature_config_id: int | None = None
    model_config_id: int | None = None
    split_config: dict | None = None
    training_params: dict | None = None
    gpu_config: dict | None = None
    evaluator_config: dict | None = None


class RunConfigPatch(Schema):
    """Each given section replaces the stored one whole; omitted sections stay as they are."""

    training_params: dict | None = None
    gpu_config: dict | None = None
    evaluator_config: dict | None = None
    schedule_config: dict | None = None


class RunListItem(Schema):
    id: int
    kind: str
    display_name: str
    run_number: int
    name: str
    model_type: str
    status: str
    current_stage: str
    current_epoch: int | None
    total_epochs: int | None
    stages: dict[str, str] = Field(description="stage -> status, in pipeline order (the card's progress bar)")
    recall_at_100: float | None
    rmse: float | None
    blessed: bool | None
    gpu_type: str | None
    gpu_count: int
    dataset_name: str | None
    error_message: str
    created_at: datetime
    duration_seconds: float | None
    cost_usd: float


class RunPage(Schema):
    count: int
    page: int
    page_size: int
    results: list[RunListItem]


class StageOut(Schema):
    name: str
    status: str = Field(description="pending, running, completed, cached, skipped, failed; interrupted (the run "
                                    "failed, or lost its process and is resumed) or cancelled (the run was)")
    started_at: str | None = None
    ended_at: str | None = None
    summary: str | None = None


class ArtifactOut(Schema):
    stage: str
    type: str
    uri: str
    producer: str
    run: str | None = None
    fingerprint: str | None = None
    inputs: dict[str, str] = {}
    summary: str = ""


class CatalogRef(Schema):
    id: int | None
    name: str | None


class ErrorOut(Schema):
    message: str
    stage: str
    traceback: str


class RunRef(Schema):
    id: int
    kind: str
    run_number: int
    name: str
    display_name: str


class RegisteredModelRef(Schema):
    id: int
    name: str
    model_type: str
    is_registered: bool
    latest_version: int | None
    deployed_version: int | None


class DiffEntry(Schema):
    field: str
    before: Any = None
    after: Any = None


class RunDetail(Schema):
    id: int
    project_id: int
    kind: str
    run_number: int
    name: str
    display_name: str
    description: str
    model_type: str
    status: str
    is_terminal: bool
    current_stage: str
    current_epoch: int | None
    total_epochs: int | None
    cancel_requested: bool
    attempts: int
    runner: str = Field(description="local (the worker) or remote (a runner reporting through webhooks)")
    last_event_at: datetime | None = Field(description="A remote run's latest event: its sign of life")
    stages: list[StageOut]
    dataset: CatalogRef
    feature_config: CatalogRef
    model_config_ref: CatalogRef = Field(alias="model_config")
    dataset_snapshot: dict
    feature_config_snapshot: dict
    model_config_snapshot: dict
    split_config: dict
    training_params: dict
    gpu_config: dict
    evaluator_config: dict
    schedule_config: dict
    final_metrics: dict
    blessed: bool | None
    blessing_reasons: list
    artifacts: list[ArtifactOut]
    resources: dict
    duration_seconds: float | None
    cost_usd: float
    error: ErrorOut | None
    registered_model: RegisteredModelRef | None
    registered_model_name: str
    rerun_of: RunRef | None
    source_experiment: RunRef | None
    from_stage: str
    config_diff: list[DiffEntry]
    mlflow_run_id: str
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    model_config = {"populate_by_name": True}


class RunConfigOut(Schema):
    id: int
    name: str
    status: str
    editable: bool
    dataset_id: int | None
    feature_config_id: int | None
    model_config_id: int | None
    training_params: dict
    gpu_config: dict
    evaluator_config: dict
    schedule_config: dict
    updated_fields: list[str] = []


class NameCheck(Schema):
    name: str
    available: bool
    model_type: str | None
    registered_model_id: int | None


# --------------------------------------------------------------------------- helpers


def run_for_user(user, run_id: int, *related: str, kind: str | None = TrainingRun.TRAINING) -> TrainingRun:
    """The run (of ``kind``; None: either kind) if the user is a member of its project, else 404."""
    runs = TrainingRun.objects.select_related("project", *related).filter(pk=run_id, project__memberships__user=user)
    run = (runs.filter(kind=kind) if kind else runs).first()
    if run is None:
        raise Http404("No such experiment" if kind == TrainingRun.EXPERIMENT else "No such training run")
    return run


DETAIL_RELATED = ("dataset", "feature_config", "model_config", "registered_model", "rerun_of", "source_experiment",
                  "created_by")


def _ref(run: TrainingRun | None) -> dict | None:
    if run is None:
        return None
    return {"id": run.pk, "kind": run.kind, "run_number": run.run_number, "name": run.name, "display_name": str(run)}


def _money(value) -> float:
    return float(value if isinstance(value, Decimal) else Decimal(str(value or 0)))


def _cost(run: TrainingRun) -> float:
    """Stored once the run is over; computed from the clock while it runs."""
    if run.is_terminal or run.started_at is None:
        return _money(run.cost_usd)
    return _money(services.cost_usd(run))


def _stage_table(run: TrainingRun) -> list[dict]:
    table = []
    for name in STAGES:
        entry = (run.stages or {}).get(name) or {}
        table.append({"name": name, "status": entry.get("status", "pending"), "started_at": entry.get("started_at"),
                      "ended_at": entry.get("ended_at"), "summary": entry.get("summary")})
    return table


def _artifact_list(run: TrainingRun) -> list[dict]:
    found = run.artifacts or {}
    return [{"stage": stage, **{k: v for k, v in found[stage].items() if k in ArtifactOut.model_fields},
             "producer": found[stage].get("producer") or stage}
            for stage in STAGES if stage in found]


def run_detail(run: TrainingRun) -> dict:
    registered = run.registered_model
    return {
        **{f: getattr(run, f) for f in (
            "id", "project_id", "kind", "run_number", "name", "description", "model_type", "status", "is_terminal",
            "current_stage", "current_epoch", "total_epochs", "cancel_requested", "attempts", "runner", "last_event_at",
            "feature_config_snapshot", "model_config_snapshot", "split_config",
            "training_params", "gpu_config", "evaluator_config", "schedule_config", "final_metrics", "blessed",
            "blessing_reasons", "resources", "duration_seconds", "from_stage", "config_diff", "mlflow_run_id",
            "created_at", "updated_at", "started_at", "completed_at")},
        "display_name": str(run),
        "dataset_snapshot": redact(run.dataset_snapshot),
        "stages": _stage_table(run),
        "dataset": {"id": run.dataset_id,
                    "name": run.dataset.name if run.dataset else (run.dataset_snapshot or {}).get("name")},
        "feature_config": {"id": run.feature_config_id,
                           "name": run.feature_config.name if run.feature_config else None},
        "model_config": {"id": run.model_config_id, "name": run.model_config.name if run.model_config else None},
        "artifacts": _artifact_list(run),
        "cost_usd": _cost(run),
        "error": ({"message": run.error_message, "stage": run.error_stage, "traceback": run.error_traceback}
                  if run.error_message or run.error_stage else None),
        "registered_model": registered,
        "registered_model_name": registered.name if registered else run.name,
        "rerun_of": _ref(run.rerun_of),
        "source_experiment": _ref(run.source_experiment),
        "created_by": run.created_by.get_username() if run.created_by else None,
    }


def detail_of(run_id: int) -> dict:
    return run_detail(TrainingRun.objects.select_related("project", *DETAIL_RELATED).get(pk=run_id))




def _config(run: TrainingRun, updated: list[str] | None = None) -> dict:
    return {
        **{f: getattr(run, f) for f in ("id", "name", "status", "dataset_id", "feature_config_id", "model_config_id",
                                        "training_params", "gpu_config", "evaluator_config", "schedule_config")},
        "editable": run.status in EDITABLE,
        "updated_fields": updated or [],
    }


def _stage_uri(run: TrainingRun, stage: str) -> str | None:
    """Where a completed (or reused) stage's artifact lives.

    ``run.artifacts`` is written when the run ends; while it is still going,
    the runner's own record (``run.json`` in the run's folder) already names
    every stage that has finished, so the Data Insights tab fills in early.
    """
    uri = ((run.artifacts or {}).get(stage) or {}).get("uri")
    if uri:
        return uri
    if _stage_status(run, stage) not in ("completed", "cached"):
        return None  # whatever the folder holds is not this run's (yet)
    record = services.run_folder(run) / "run.json"
    try:
        entry = json.loads(record.read_text())["stages"].get(stage) or {}
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    return entry.get("uri") if entry.get("status") in ("completed", "cached") else None


def _stage_status(run: TrainingRun, stage: str) -> str:
    return ((run.stages or {}).get(stage) or {}).get("status", "pending")


def artifact_output(run: TrainingRun, stage: str, what: str) -> Path:
    uri = _stage_uri(run, stage)
    if uri is None:
        state = _stage_status(run, stage)
        if run.is_terminal:
            reason = f"this run ended ({run.status}) before {stage} produced it"
        else:
            reason = f"{stage} has not completed yet ({state})"
        raise Http404(f"No {what} for this run: {reason}")
    output = Path(uri) / "output"
    if not output.is_dir():
        raise Http404(f"No {what} for this run: the {stage} artifact's files are gone")
    return output


def _tail(path: Path, lines: int) -> tuple[str, bool]:
    """The last ``lines`` lines of a file, read from its end (logs can be large); and whether any were cut."""
    block = 64 * 1024
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        end = position = handle.tell()
        data = b""
        while position > 0 and data.count(b"\n") <= lines:
            step = min(block, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    text = data.decode("utf-8", errors="replace")
    kept = text.splitlines()
    cut = position > 0 or len(kept) > lines
    return "\n".join(kept[-lines:]) + ("\n" if kept and text.endswith("\n") else ""), cut and end > 0


def _log_entry(name: str, path: Path | None, lines: int, status: str, cached_from: str | None = None) -> dict:
    entry = {"stage": name, "status": status, "available": False, "text": "", "truncated": False,
             "size_bytes": 0, "cached_from": cached_from}
    if path is not None and path.is_file():
        text, truncated = _tail(path, lines)
        entry.update(available=True, text=text, truncated=truncated, size_bytes=path.stat().st_size)
    return entry


def _stage_log(run: TrainingRun, stage: str, lines: int) -> dict:
    """The stage's ``stage.log`` in this run's folder; for a stage reused from the cache, the producing run's."""
    status = _stage_status(run, stage)
    if status in ("pending", "skipped"):
        return _log_entry(stage, None, lines, status)  # not started in this run: nothing to read
    own = services.run_folder(run) / stage / "stage.log"
    if own.is_file() or status != "cached":
        return _log_entry(stage, own, lines, status)
    uri = _stage_uri(run, stage)
    source = Path(uri) / "stage.log" if uri else None
    return _log_entry(stage, source, lines, status, cached_from=Path(uri).parent.name if uri else None)


def _schema_features(schema: schema_pb2.Schema) -> list[dict]:
    features = []
    for feature in schema.feature:
        domain = feature.WhichOneof("domain_info")
        values = None
        if domain == "string_domain":
            values = len(feature.string_domain.value)
        elif domain == "domain":
            named = next((d for d in schema.string_domain if d.name == feature.domain), None)
            values = len(named.value) if named else None
        presence = feature.presence.min_fraction if feature.HasField("presence") else None
        features.append({
            "name": feature.name,
            "type": schema_pb2.FeatureType.Name(feature.type),
            "presence_min_fraction": presence,
            "required": presence == 1.0,
            "domain_values": values,
        })
    return features


def _statistics_overview(summary: dict) -> dict:
    """The summary cards: examples, features, numeric vs categorical, average missing share (train split)."""
    splits = summary.get("splits") or {}
    split = "train" if "train" in splits else next(iter(splits), None)
    columns = (splits.get(split) or {}).get("columns") or {}
    kinds = [c.get("type") for c in columns.values()]
    missing = [c.get("missing_pct") for c in columns.values() if c.get("missing_pct") is not None]
    return {
        "split": split,
        "examples_by_split": {name: s.get("num_examples") for name, s in splits.items()},
        "total_examples": sum(s.get("num_examples") or 0 for s in splits.values()),
        "num_features": len(summary.get("features") or columns),
        "numeric_features": sum(k in ("int", "float") for k in kinds),
        "categorical_features": sum(k == "string" for k in kinds),
        "timestamp_features": sum(k == "timestamp" for k in kinds),
        "avg_missing_pct": round(sum(missing) / len(missing), 4) if missing else None,
    }


# --------------------------------------------------------------------------- runs


@router.post("/projects/{project_id}/training-runs/", response={201: RunDetail}, by_alias=True)
def create_training_run(request, project_id: int, payload: TrainingRunIn):
    """Validate the whole run (configs, parameters, the source's columns) and queue it."""
    project = project_for_user(request.user, project_id)
    run = services.create_training_run(project, request.user, **payload.model_dump())
    audit.record(request, audit.Action.CREATE, run, changes=payload.model_dump(exclude_defaults=True))
    return Status(201, detail_of(run.pk))


@router.get("/projects/{project_id}/training-runs/", response=RunPage)
def list_training_runs(request, project_id: int, status: str | None = None, model_type: str | None = None,
                       dataset_id: Id | None = None, search: str | None = None,
                       page: int = Query(1, ge=1, le=PAGE_MAX), page_size: int = Query(20, ge=1, le=100)):
    """Newest first. ``status`` and ``model_type`` take one value or several, comma-separated.

    Two queries per page whatever its size (a count and the page's rows), and
    only the columns a card shows: the headline metrics and the stage bar are
    read out of the JSON columns by the database.
    """
    project = project_for_user(request.user, project_id)
    runs = filtered_runs(project, TrainingRun.TRAINING, status=status, model_type=model_type, dataset_id=dataset_id,
                         search=search)
    return run_page(runs, page, page_size)


def filtered_runs(project, kind: str, *, status: str | None, model_type: str | None, dataset_id: int | None,
                  search: str | None):
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
    """One page of compact cards, newest first, and the total count."""
    count = runs.count()
    start = (page - 1) * page_size
    # The page's ids in a subquery (answered from the (project, -created_at) index), then only those rows'
    # columns: an OFFSET no longer reads and parses the JSON columns of every row it skips.
    page_ids = runs.values("pk")[start:start + page_size]
    rows = TrainingRun.objects.filter(pk__in=page_ids).values(
        "id", "kind", "run_number", "name", "model_type", "status", "current_stage", "current_epoch", "total_epochs",
        "blessed", "created_at", "started_at", "completed_at", "cost_usd", "error_message",
        recall_at_100=F("final_metrics__recall_at_100"), rmse=F("final_metrics__rmse"),
        gpu_type=F("gpu_config__gpu_type"), gpu_count=F("gpu_config__gpu_count"),
        dataset_name=F("dataset_snapshot__name"),
        **{f"stage_{i}": F(f"stages__{stage}__status") for i, stage in enumerate(STAGES)},
    ) if start < count else []
    return {"count": count, "page": page, "page_size": page_size, "results": [_list_item(row) for row in rows]}


def _list_item(row: dict) -> dict:
    status = row["status"]
    started, completed = row.pop("started_at"), row.pop("completed_at")
    shell = TrainingRun(kind=row["kind"], run_number=row["run_number"], name=row["name"], status=status,
                        started_at=started, completed_at=completed, cost_usd=row.pop("cost_usd"),
                        gpu_config={"gpu_type": row["gpu_type"], "gpu_count": row["gpu_count"] or 0})
    stages = {stage: row.pop(f"stage_{i}") or "pending" for i, stage in enumerate(STAGES)}
    error = row.pop("error_message") or ""
    return {
        **row,
        "display_name": str(shell),
        "stages": stages,
        "gpu_count": row["gpu_count"] or 0,
        "recall_at_100": _number(row["recall_at_100"]),
        "rmse": _number(row["rmse"]),
        "error_message": error if len(error) <= 300 else error[:297] + "...",
        "duration_seconds": shell.duration_seconds,
        "cost_usd": _cost(shell),
    }


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


# Registered before "/training-runs/{run_id}/": the first matching path wins, and "compare" is no run id.
@router.get("/training-runs/compare/", response=dict)
def compare_runs(request, ids: str = Query(..., description="Two to ten run or experiment ids, comma-separated")):
    """Runs (and experiments) side by side: every config leaf (differences marked), final metrics (the best
    one named), and per-epoch learning curves to overlay."""
    wanted = comma_ids("ids", ids, what="run ids")
    if not 2 <= len(wanted) <= comparison.MAX_COMPARED:
        raise ConfigError(Problem("ids", f"give between 2 and {comparison.MAX_COMPARED} different runs"))
    runs = [run_for_user(request.user, run_id, kind=None) for run_id in wanted]
    return comparison.compare(runs)


@router.get("/training-runs/{run_id}/", response=RunDetail, by_alias=True)
def get_training_run(request, run_id: int):
    """Everything the view modal shows: stage table, epochs, outcome, lineage, cost, error, snapshots."""
    return run_detail(run_for_user(request.user, run_id, *DETAIL_RELATED))


@router.post("/training-runs/{run_id}/cancel/", response=RunDetail, by_alias=True)
def cancel_training_run(request, run_id: int):
    """A queued run is cancelled at once; a running one is stopped by its worker within seconds."""
    run = services.request_cancel(run_for_user(request.user, run_id))
    audit.record(request, audit.Action.CANCEL, run, changes={"status": run.status})
    return detail_of(run.pk)


@router.delete("/training-runs/{run_id}/", response={204: None})
def delete_training_run(request, run_id: int):
    """Finished runs only (409 otherwise); the run's artifacts folder goes too."""
    run = run_for_user(request.user, run_id)
    with audit.recording(request, audit.Action.DELETE, run):
        services.delete_run(run)
    return Status(204, None)


@router.post("/training-runs/{run_id}/rerun/", response={201: RunDetail}, by_alias=True)
def rerun_training_run(request, run_id: int, payload: Body[RerunIn | None] = None):
    """A new run (next run number, same name and configs) from a finished one; 409 while it is not finished.

    The body may edit the copy (sections replace the original's; ids take fresh snapshots) and name a
    ``from_stage`` to recompute from; earlier stages are reused when their fingerprints still match. The new
    run's ``config_diff`` lists what changed.
    """
    return Status(201, detail_of(rerun_run(request, run_for_user(request.user, run_id), payload).pk))


def rerun_run(request, run: TrainingRun, payload: RerunIn | None) -> TrainingRun:
    changes = payload.model_dump(exclude_unset=True) if payload else {}
    from_stage = changes.pop("from_stage", None)
    if from_stage is not None and from_stage not in STAGES:
        raise ConfigError(Problem("from_stage", f"unknown stage '{from_stage}'; one of {', '.join(STAGES)}"))
    new = services.rerun(run, request.user, from_stage=from_stage, changes=changes)
    audit.record(request, audit.Action.RERUN, new, changes={"rerun_of": run.pk, "from_stage": new.from_stage,
                                                            "changed": [d["field"] for d in new.config_diff]})
    return new


@router.get("/training-runs/{run_id}/vs-experiment/", response=dict)
def results_vs_experiment(request, run_id: int):
    """The run's final metrics against the experiment it was promoted from: values, deltas, improved or not."""
    run = run_for_user(request.user, run_id, "source_experiment")
    if run.source_experiment is None:
        raise ApiError(404, "This run was not promoted from an experiment (or the experiment was deleted)")
    return comparison.against_experiment(run)


@router.post("/training-runs/{run_id}/push/", response=RunDetail, by_alias=True)
def push_training_run(request, run_id: int):
    """Register a blessed, completed run as the next version of its model (409 with the reasons otherwise)."""
    run = registry_services.push_to_registry(run_for_user(request.user, run_id))
    audit.record(request, audit.Action.PUSH, run, changes={"registered_model": run.registered_model.name,
                                                           "version": run.registry_version})
    return detail_of(run.pk)


# --------------------------------------------------------------------------- progress and outputs


@router.get("/training-runs/{run_id}/metrics/", response=dict)
def get_metrics(request, run_id: int, histograms: bool = False):
    """One row per epoch (loss, val_loss, Recall@K, RMSE/MAE, every other scalar, resources).

    Weight histograms are large: only with ``?histograms=true``.
    """
    return metrics_of(run_for_user(request.user, run_id), histograms)


def metrics_of(run: TrainingRun, histograms: bool) -> dict:
    fields = ["epoch", "loss", "val_loss", "recall_at_5", "recall_at_10", "recall_at_50", "recall_at_100", "rmse",
              "mae", "metrics", "resources", "recorded_at"]
    if histograms:
        fields.append("histograms")
    rows = TrainingMetricsHistory.objects.filter(training_run=run).order_by("epoch").values(*fields)
    return {"run_id": run.pk, "status": run.status, "current_epoch": run.current_epoch,
            "total_epochs": run.total_epochs, "epochs": list(rows)}


@router.get("/training-runs/{run_id}/logs/", response=dict)
def get_logs(request, run_id: int, stage: str | None = None,
             tail: int = Query(LOG_TAIL_DEFAULT, ge=1, le=LOG_TAIL_MAX)):
    """Each stage's ``stage.log`` (the last ``tail`` lines), in pipeline order, and the worker's log.

    ``?stage=Trainer`` answers one stage's log; ``?stage=worker`` only the worker's.
    """
    return logs_of(run_for_user(request.user, run_id), stage, tail)


def logs_of(run: TrainingRun, stage: str | None, tail: int) -> dict:
    if stage is not None and stage not in (*STAGES, WORKER_LOG):
        raise ConfigError(Problem("stage", f"unknown stage '{stage}'; one of {', '.join(STAGES)} or {WORKER_LOG}"))
    wanted = [stage] if stage in STAGES else ([] if stage == WORKER_LOG else list(STAGES))
    answer = {"run_id": run.pk, "status": run.status, "tail": tail,
              "stages": [_stage_log(run, name, tail) for name in wanted]}
    if stage is None or stage == WORKER_LOG:
        started = run.attempts > 0 or run.started_at is not None
        answer["worker"] = _log_entry(WORKER_LOG, services.run_folder(run) / "worker.log" if started else None,
                                      tail, run.status)
    return answer


@router.get("/training-runs/{run_id}/statistics/", response=dict)
def get_statistics(request, run_id: int):
    """StatisticsGen's summary (per split: every column's counts, missing share, moments or top values)."""
    return statistics_of(run_for_user(request.user, run_id))


def statistics_of(run: TrainingRun) -> dict:
    output = artifact_output(run, "StatisticsGen", "statistics")
    try:
        summary = json.loads((output / "summary.json").read_text())
    except FileNotFoundError:
        raise Http404("No statistics for this run: the StatisticsGen artifact has no summary.json") from None
    return {"run_id": run.pk, "overview": _statistics_overview(summary), "summary": summary,
            "report_url": reverse("training-run-statistics", args=[run.pk])}


@router.get("/training-runs/{run_id}/schema/", response=dict)
def get_schema(request, run_id: int):
    """SchemaGen's schema (the TFDV ``Schema`` as JSON, and a feature table) and the anomalies it found."""
    return schema_of(run_for_user(request.user, run_id))


def schema_of(run: TrainingRun) -> dict:
    output = artifact_output(run, "SchemaGen", "schema")
    try:
        schema = text_format.Parse((output / "schema.pbtxt").read_text(), schema_pb2.Schema())
    except FileNotFoundError:
        raise Http404("No schema for this run: the SchemaGen artifact has no schema.pbtxt") from None
    anomalies_file = output / "anomalies.json"
    anomalies = json.loads(anomalies_file.read_text()) if anomalies_file.is_file() else []
    return {
        "run_id": run.pk,
        "features": _schema_features(schema),
        "schema": json_format.MessageToDict(schema, preserving_proto_field_name=True),
        "anomalies": anomalies,
    }


# --------------------------------------------------------------------------- editing


@router.get("/training-runs/{run_id}/config/", response=RunConfigOut)
def get_config(request, run_id: int):
    """The run's saved parameters (what a rerun or a schedule will use)."""
    return _config(run_for_user(request.user, run_id))


@router.patch("/training-runs/{run_id}/config/", response=RunConfigOut)
def update_config(request, run_id: int, payload: RunConfigPatch):
    """Edit a finished or scheduled run's parameters; checked by rebuilding its spec (422 names the field)."""
    run = run_for_user(request.user, run_id)
    if run.status not in EDITABLE:
        raise ApiError(409, f"A {run.status} run's configuration cannot be edited; "
                            f"cancel it or wait until it has finished")
    changes = {k: v for k, v in payload.model_dump(exclude_unset=True).items() if v is not None}
    if "schedule_config" in changes and "scheduler_job_id" not in changes["schedule_config"]:
        # The scheduler's job belongs to the scheduler, not to the edit form.
        changes["schedule_config"] = {**changes["schedule_config"],
                                      "scheduler_job_id": run.schedule_config.get("scheduler_job_id")}
    gpu, schedule = services.validate_parameters(changes.get("gpu_config", run.gpu_config),
                                                 changes.get("schedule_config", run.schedule_config))
    if "gpu_config" in changes:
        changes["gpu_config"] = gpu
    if "schedule_config" in changes:
        changes["schedule_config"] = schedule
    for field, value in changes.items():
        setattr(run, field, value)
    spec = services.prepare_spec(run)
    fields = {**changes, "spec": spec.model_dump(mode="json")}
    if run.status == TrainingRun.SCHEDULED:  # a finished run keeps the epoch count it ran with
        fields["total_epochs"] = spec.training.epochs
    # Guarded: a scheduled run may have been queued meanwhile.
    if not TrainingRun.objects.filter(pk=run.pk, status__in=EDITABLE).update(**fields):
        raise ApiError(409, "The run started meanwhile; its configuration can no longer be edited")
    run.refresh_from_db()
    audit.record(request, audit.Action.UPDATE, run, changes=payload.model_dump(exclude_unset=True))
    return _config(run, updated=sorted(changes))


# --------------------------------------------------------------------------- registered model names


@router.get("/projects/{project_id}/registered-models/check-name/", response=NameCheck)
def check_model_name(request, project_id: int, name: str = Query(..., min_length=1, max_length=200)):
    """Whether a run name is new. A taken name may still be used by a run of the same model type
    (it becomes that model's next version); ``model_type`` says which type that is."""
    project = project_for_user(request.user, project_id)
    existing = RegisteredModel.objects.filter(project=project, name=name.strip()).only("id", "model_type").first()
    return {"name": name.strip(), "available": existing is None,
            "model_type": existing.model_type if existing else None,
            "registered_model_id": existing.pk if existing else None}
