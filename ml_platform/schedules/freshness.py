"""Whether an occurrence has new data to train on: a scheduled run whose window holds nothing new since the
schedule's last successful run is skipped (scheduler.fire), with the reason, rather than trained again.

A firing keeps what its dataset held for it (:func:`data_signature`, with a relative window ending at the
occurrence, as the run's ExampleGen reads it). The next occurrence has new data when the source changed (its
fingerprint, or else its row count) or its window holds a row newer than the last successful run's newest:
rows that came since, or rows that lay after that run's window end and are inside this one. A BigQuery
source is judged by its fingerprint alone (BigQuery's own last-modified time and row count of each table).
"""

from __future__ import annotations

from datetime import datetime

from ml_pipeline.config.dataset import DatasetConfig
from ml_pipeline.data.bigquery import BigQueryRows
from ml_pipeline.errors import ConfigError, DataError
from ml_pipeline.stages.example_gen import source_fingerprint
from ml_platform.core.errors import DomainError
from ml_platform.datasets import services as dataset_services
from ml_platform.datasets.access import data_access_for
from ml_platform.schedules.models import FiringStatus, ScheduleFiring, TrainingSchedule


def data_signature(schedule: TrainingSchedule, as_of: datetime) -> dict | None:
    """What the dataset holds for the occurrence ``as_of`` (its relative window ending there), as far as "is
    there new data" goes: the source's fingerprint (ExampleGen's) and rows, and the window's rows and newest
    timestamp; for a BigQuery source, its fingerprint alone (its tables' last-modified times and row counts:
    counting the window would be a billed query). None when that cannot be read here (a source that fails,
    which its run then reports; BigQuery out of reach)."""
    dataset = schedule.dataset
    try:
        config = dataset_services.dataset_config(dataset)
        if config.filters.last_days or (schedule.split_config or {}).get("strategy") == "time_holdout":
            config = DatasetConfig.model_validate({**config.model_dump(), "as_of": as_of})  # as its run reads
        if config.source.kind == "bigquery":
            return _bigquery_signature(config)
        found = dataset_services.compute_preview(dataset.project, dataset.source, config)
        source = source_fingerprint(config, data_access_for(dataset.project))
    except (ConfigError, DataError, DomainError, OSError):
        return None
    if not found:
        return None
    return {
        "source": source,
        "source_rows": found["source_rows"],
        "rows": found["rows"],
        "last_timestamp": found["last_timestamp"],
        "as_of": config.as_of.isoformat() if config.as_of else None,
    }


def _bigquery_signature(config: DatasetConfig) -> dict | None:
    """An unchanged fingerprint means no table the source reads was modified: no new data. A table being
    streamed into, or BigQuery out of reach, has none (DataError): never skipped then."""
    try:
        source = BigQueryRows.open(config).fingerprint()
    except DataError:
        return None
    return {"source": source, "as_of": config.as_of.isoformat() if config.as_of else None}


def _source_changed(previous: dict, current: dict) -> bool:
    known = not current["source"].startswith("unavailable:")  # an unreadable fingerprint never matches
    if known and previous.get("source"):
        return previous["source"] != current["source"]
    return previous.get("source_rows") != current.get("source_rows")


def _has_new_rows(previous: dict, current: dict) -> bool:
    """Whether the window holds a row the last successful run's did not: one newer than its newest (rows
    that were after its window's end, or came since), or any change where the rows have no timestamp."""
    if "last_timestamp" not in current or (current["last_timestamp"] is None and current["rows"] == 0):
        return False  # an empty window: nothing to train on, new or not
    newest, before = current["last_timestamp"], previous.get("last_timestamp")
    if newest is None or before is None:
        return current["rows"] != previous.get("rows")
    return datetime.fromisoformat(newest) > datetime.fromisoformat(before)


def unchanged_since(schedule: TrainingSchedule, signature: dict | None) -> str:
    """Why this occurrence would train on nothing new since the schedule's last successful run (the reason it
    is skipped for), or "": the source is as it was and its window holds no row that run's did not."""
    if not signature:
        return ""
    last = (
        ScheduleFiring.objects.filter(schedule=schedule, status__in=(FiringStatus.SUCCEEDED, FiringStatus.NOT_BLESSED))
        .exclude(data_signature={})
        .select_related("run")
        .order_by("-scheduled_for", "-id")
        .first()
    )
    if last is None:
        return ""
    previous = last.data_signature
    if _source_changed(previous, signature) or _has_new_rows(previous, signature):
        return ""
    window = f" up to {signature['as_of'].replace('T', ' ')}" if signature.get("as_of") else ""
    since = f"no new data since {last.run or 'the last successful run'}"
    if "rows" not in signature:
        return f"{since} (its BigQuery tables unchanged{window})"
    newest = f", newest {signature['last_timestamp']}" if signature.get("last_timestamp") else ""
    rows = f"{signature['rows']:,} {'row' if signature['rows'] == 1 else 'rows'}"
    return f"{since} ({rows}{window}{newest})"
