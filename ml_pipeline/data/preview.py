"""Dataset preview: what a dataset holds after mapping and filters, in one scan."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from ml_pipeline.config.dataset import DatasetConfig
from ml_pipeline.data.access import DataAccess
from ml_pipeline.data.sources import open_rows


def compact_count(n: int) -> str:
    """4,792 -> '4.79K', 2,450,123 -> '2.45M' (three significant digits)."""
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= threshold:
            return f"{n / threshold:.3g}{suffix}"
    return str(n)


def describe_span(days: float) -> str:
    if days >= 730:
        return f"{round(days / 365.25)} years"
    if days >= 60:
        return f"{round(days / 30.44)} months"
    whole = max(1, round(days))
    return "1 day" if whole == 1 else f"{whole} days"


def _jsonable(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def preview(config: DatasetConfig, sample_rows: int = 10, access: DataAccess | None = None) -> dict:
    """Counts, date span, column types and a few sample rows of the mapped data."""
    with open_rows(config, access=access) as con:
        source_rows = con.execute("SELECT count(*) FROM source_rows").fetchone()[0]
        has_time = config.mapping.timestamp is not None
        time_cols = 'min("timestamp"), max("timestamp")' if has_time else "NULL, NULL"
        rows, buyers, products, first, last = con.execute(
            f"SELECT count(*), count(DISTINCT buyer_id), count(DISTINCT product_id), {time_cols} FROM rows"
        ).fetchone()
        columns = [{"name": name, "type": dtype} for name, dtype, *_ in con.execute("DESCRIBE rows").fetchall()]
        cursor = con.execute(f"SELECT * FROM rows LIMIT {int(sample_rows)}")
        names = [d[0] for d in cursor.description]
        sample = [{k: _jsonable(v) for k, v in zip(names, row)} for row in cursor.fetchall()]

    parts = [f"{compact_count(rows)} rows", f"{compact_count(buyers)} users", f"{compact_count(products)} products"]
    span_days = None
    if first is not None and last is not None:
        span_days = (last - first).total_seconds() / 86400
        parts.append(describe_span(span_days))
    return {
        "source_rows": source_rows,
        "rows": rows,
        "dropped_rows": source_rows - rows,
        "buyers": buyers,
        "products": products,
        "first_timestamp": _jsonable(first),
        "last_timestamp": _jsonable(last),
        "span_days": round(span_days, 2) if span_days is not None else None,
        "summary": " | ".join(parts),
        "columns": columns,
        "sample": sample,
    }
