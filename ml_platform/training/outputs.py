"""What a run produced, read from its folder and its metrics rows: per-epoch metrics, the stage logs and
the worker's log, StatisticsGen's summary and SchemaGen's schema (the Data Insights and Logs tabs, and the
statistics report page).

A stage's artifact is found through the run's record: ``run.artifacts`` once the run has ended, the
runner's own ``run.json`` while it is still going. What is not there (yet) raises ``NotFound`` saying why.
"""

from __future__ import annotations

import json

from django.urls import reverse
from google.protobuf import json_format, text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from ml_pipeline.metrics import metric_split
from ml_pipeline.spec import STAGES, StageStatus
from ml_platform.core.errors import NotFound
from ml_platform.training.artifact_files import StoredFile, run_files, stored
from ml_platform.training.models import EPOCH_METRICS, TrainingMetricsHistory, TrainingRun
from ml_platform.training.schemas import WORKER_LOG

LOG_TAIL_DEFAULT, LOG_TAIL_MAX = 500, 20_000
OUTPUT_STATES = tuple(s for s in StageStatus if s.produced_output)
EPOCH_FIELDS = ("epoch", *EPOCH_METRICS, "metrics", "resources", "recorded_at")


def metrics_of(run: TrainingRun, histograms: bool) -> dict:
    """One row per epoch (``schemas.MetricsOut``); weight histograms only when asked for (they are large)."""
    fields = [*EPOCH_FIELDS, "histograms"] if histograms else list(EPOCH_FIELDS)
    rows = TrainingMetricsHistory.objects.filter(training_run=run).order_by("epoch").values(*fields)
    return {
        "run_id": run.pk,
        "status": run.status,
        "current_epoch": run.current_epoch,
        "total_epochs": run.total_epochs,
        "metric_splits": {name: metric_split(name, "eval") for name in EPOCH_METRICS},
        "epochs": list(rows),
    }


# --------------------------------------------------------------------------- the run's record


def stage_status(run: TrainingRun, stage: str) -> str:
    return ((run.stages or {}).get(stage) or {}).get("status", StageStatus.PENDING)


def _stage_uri(run: TrainingRun, stage: str) -> str | None:
    """Where a completed (or reused) stage's artifact lives.

    ``run.artifacts`` is written when the run ends; while it is still going,
    the runner's own record (``run.json`` in the run's folder) already names
    every stage that has finished, so the Data Insights tab fills in early.
    """
    uri = ((run.artifacts or {}).get(stage) or {}).get("uri")
    if uri:
        return uri
    if stage_status(run, stage) not in OUTPUT_STATES:
        return None  # whatever the folder holds is not this run's (yet)
    record = run_files(run) / "run.json"
    try:
        entry = json.loads(record.read_text())["stages"].get(stage) or {}
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    return entry.get("uri") if entry.get("status") in OUTPUT_STATES else None


def artifact_output(run: TrainingRun, stage: str, what: str) -> StoredFile:
    """The ``output`` folder of the stage's artifact; NotFound naming ``what`` and why it is missing."""
    uri = _stage_uri(run, stage)
    if uri is None:
        state = stage_status(run, stage)
        if run.is_terminal:
            reason = f"this run ended ({run.status}) before {stage} produced it"
        else:
            reason = f"{stage} has not completed yet ({state})"
        raise NotFound(f"No {what} for this run: {reason}")
    output = stored(uri) / "output"
    if not output.is_dir():
        raise NotFound(f"No {what} for this run: the {stage} artifact's files are gone")
    return output


# --------------------------------------------------------------------------- logs


def logs_of(run: TrainingRun, stage: str | None, tail: int) -> dict:
    """Each stage's ``stage.log`` (the last ``tail`` lines) in pipeline order, and the worker's log
    (``schemas.LogsOut``); ``stage`` narrows it to one stage's, or to the worker's."""
    wanted = [stage] if stage in STAGES else ([] if stage == WORKER_LOG else list(STAGES))
    answer = {
        "run_id": run.pk,
        "status": run.status,
        "tail": tail,
        "stages": [_stage_log(run, name, tail) for name in wanted],
    }
    if stage is None or stage == WORKER_LOG:
        started = run.attempts > 0 or run.started_at is not None
        answer["worker"] = _log_entry(WORKER_LOG, run_files(run) / "worker.log" if started else None, tail, run.status)
    return answer


def _log_entry(name: str, path: StoredFile | None, lines: int, status: str, cached_from: str | None = None) -> dict:
    entry = {
        "stage": name,
        "status": status,
        "available": False,
        "text": "",
        "truncated": False,
        "size_bytes": 0,
        "cached_from": cached_from,
    }
    if path is not None and path.is_file():
        text, truncated = path.tail(lines)
        entry.update(available=True, text=text, truncated=truncated, size_bytes=path.size())
    return entry


def _stage_log(run: TrainingRun, stage: str, lines: int) -> dict:
    """The stage's ``stage.log`` in this run's folder; for a stage reused from the cache, the producing run's."""
    status = stage_status(run, stage)
    if status in (StageStatus.PENDING, StageStatus.SKIPPED):
        return _log_entry(stage, None, lines, status)  # not started in this run: nothing to read
    own = run_files(run) / stage / "stage.log"
    if own.is_file() or status != StageStatus.CACHED:
        return _log_entry(stage, own, lines, status)
    uri = _stage_uri(run, stage)
    source = stored(uri) / "stage.log" if uri else None
    return _log_entry(stage, source, lines, status, cached_from=stored(uri).parent.name if uri else None)


def cached_from(run: TrainingRun, stage: str) -> str | None:
    """The run (its folder's name) a stage reused from the cache produced its artifact in; None if not cached."""
    if stage_status(run, stage) != StageStatus.CACHED:
        return None
    recorded = ((run.artifacts or {}).get(stage) or {}).get("run")
    if recorded:
        return recorded
    uri = _stage_uri(run, stage)
    return stored(uri).parent.name if uri else None


def log_file(run: TrainingRun, name: str) -> tuple[StoredFile, str]:
    """The whole log ``name`` (a stage's, or the worker's) for a download, and the file name to give it.

    A cached stage's is the producing run's; NotFound says why there is none, never where it was looked for.
    """
    if name == WORKER_LOG:
        path = run_files(run) / "worker.log"
    elif name in STAGES:
        status = stage_status(run, name)
        if status in (StageStatus.PENDING, StageStatus.SKIPPED):
            raise NotFound(f"No {name} log for this run: the stage is {status}")
        path = run_files(run) / name / "stage.log"
        if not path.is_file() and status == StageStatus.CACHED:
            uri = _stage_uri(run, name)
            path = stored(uri) / "stage.log" if uri else path
    else:
        raise NotFound(f"No log '{name}'")
    if not path.is_file():
        raise NotFound(f"No {name} log for this run: it has not written one (yet)")
    return path, f"run-{run.pk}-{name}.log"


# --------------------------------------------------------------------------- statistics and schema


def statistics_of(run: TrainingRun) -> dict:
    """StatisticsGen's summary and the overview cards (``schemas.StatisticsOut``)."""
    output = artifact_output(run, "StatisticsGen", "statistics")
    try:
        summary = json.loads((output / "summary.json").read_text())
    except FileNotFoundError:
        raise NotFound("No statistics for this run: the StatisticsGen artifact has no summary.json") from None
    return {
        "run_id": run.pk,
        "overview": _statistics_overview(summary),
        "summary": summary,
        "report_url": reverse("training-run-statistics", args=[run.pk]),
    }


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


def schema_of(run: TrainingRun) -> dict:
    """SchemaGen's schema (the TFDV proto as JSON, and a feature table) and its anomalies (``schemas.SchemaOut``)."""
    output = artifact_output(run, "SchemaGen", "schema")
    try:
        schema = text_format.Parse((output / "schema.pbtxt").read_text(), schema_pb2.Schema())
    except FileNotFoundError:
        raise NotFound("No schema for this run: the SchemaGen artifact has no schema.pbtxt") from None
    anomalies_file = output / "anomalies.json"
    anomalies = json.loads(anomalies_file.read_text()) if anomalies_file.is_file() else []
    return {
        "run_id": run.pk,
        "features": _schema_features(schema),
        "schema": json_format.MessageToDict(schema, preserving_proto_field_name=True),
        "anomalies": anomalies,
    }


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
        features.append(
            {
                "name": feature.name,
                "type": schema_pb2.FeatureType.Name(feature.type),
                "presence_min_fraction": presence,
                "required": presence == 1.0,
                "domain_values": values,
            }
        )
    return features
