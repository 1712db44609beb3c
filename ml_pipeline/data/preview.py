"""Dataset preview: what a dataset holds after mapping and filters, in one scan."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import duckdb

from ml_pipeline.config.dataset import DatasetConfig
from ml_pipeline.data.access import DataAccess
from ml_pipeline.data.files import readable_error
from ml_pipeline.data.sources import open_rows
from ml_pipeline.data.sql import ident


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


# A preview warns when more than this share of the source is dropped for one missing value, or one buyer or
# product holds more than this share of the rows kept (a placeholder such as "0" for "no customer").
LARGE_SHARE = 0.10
MIN_ROWS_FOR_SHARES = 1000  # in a handful of rows every buyer holds a large share


def _dropped(con, config: DatasetConfig, source_rows: int, rows: int) -> list[dict]:
    """Rows left out, by the first reason each one meets: no buyer id, no product id, no readable timestamp,
    then the filters."""
    checks = [("no_buyer_id", "buyer_id IS NULL", "without a buyer id")]
    checks.append(("no_product_id", "product_id IS NULL", "without a product id"))
    if config.mapping.timestamp:
        checks.append(("no_timestamp", '"timestamp" IS NULL', "without a readable timestamp"))
    counts, before = [], []
    for _, condition, _ in checks:
        counts.append(f"count(*) FILTER (WHERE {' AND '.join([*before, condition])})")
        before.append(f"NOT ({condition})")
    found = con.execute(f"SELECT {', '.join(counts)} FROM mapped_source").fetchone()
    reasons = [(reason, int(n), label) for (reason, _, label), n in zip(checks, found)]
    reasons.append(("filters", source_rows - rows - sum(n for _, n, _ in reasons), "left out by the filters"))
    return [
        {"reason": reason, "rows": n, "message": f"{n:,} {'row' if n == 1 else 'rows'} {label}"}
        for reason, n, label in reasons
        if n
    ]


def _warnings(con, config: DatasetConfig, source_rows: int, rows: int, dropped: list[dict]) -> list[str]:
    warnings = []
    missing = ", ".join(config.mapping.missing_ids)
    for entry in dropped:
        share = entry["rows"] / source_rows if source_rows else 0
        if entry["reason"] in ("no_buyer_id", "no_product_id") and share > LARGE_SHARE:
            role = "buyer" if entry["reason"] == "no_buyer_id" else "product"
            column = getattr(config.mapping, f"{role}_id")
            warnings.append(
                f"{share:.0%} of the rows have no {role} id in '{column}' (blank or one of: {missing}) and are left out"
            )
        if entry["reason"] == "no_timestamp" and share > LARGE_SHARE:
            warnings.append(f"{share:.0%} of the rows have no readable timestamp and are left out")
    if rows >= MIN_ROWS_FOR_SHARES:
        for role in ("buyer", "product"):
            top = con.execute(
                f"SELECT {role}_id, count(*) AS n FROM rows GROUP BY 1 ORDER BY n DESC, 1 LIMIT 1"
            ).fetchone()
            if top and top[1] / rows > LARGE_SHARE and top[1] > 1:
                warnings.append(
                    f"{role} '{top[0]}' holds {top[1] / rows:.0%} of the rows: if it stands for a missing id, "
                    "add it to the mapping's missing_ids"
                )
    return warnings


def _distinct_counts(con, config: DatasetConfig) -> dict[str, int]:
    """Distinct values of every id, text and integer column of the mapped rows: the vocabularies a feature
    config on this dataset would build (before max_vocab_size and min_count)."""
    names = [
        name
        for name, dtype in config.mapping.output_columns().items()
        if dtype in ("string", "int") and name != "timestamp"
    ]
    if not names:
        return {}
    found = con.execute(f"SELECT {', '.join(f'count(DISTINCT {ident(n)})' for n in names)} FROM rows").fetchone()
    return {name: int(n) for name, n in zip(names, found)}


def preview(config: DatasetConfig, sample_rows: int = 10, access: DataAccess | None = None) -> dict:
    """Counts, date span, column types, what was dropped and why, and a few sample rows of the mapped data."""
    with open_rows(config, access=access) as con:
        try:
            return _preview(con, config, sample_rows)
        except duckdb.Error as error:
            raise readable_error(error) from None


def _preview(con, config: DatasetConfig, sample_rows: int) -> dict:
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
    dropped = _dropped(con, config, source_rows, rows)

    parts = [f"{compact_count(rows)} rows", f"{compact_count(buyers)} users", f"{compact_count(products)} products"]
    span_days = None
    if first is not None and last is not None:
        span_days = (last - first).total_seconds() / 86400
        parts.append(describe_span(span_days))
    return {
        "source_rows": source_rows,
        "rows": rows,
        "dropped_rows": source_rows - rows,
        "dropped": dropped,
        "warnings": _warnings(con, config, source_rows, rows, dropped),
        "buyers": buyers,
        "products": products,
        "distinct": _distinct_counts(con, config),
        "first_timestamp": _jsonable(first),
        "last_timestamp": _jsonable(last),
        "span_days": round(span_days, 2) if span_days is not None else None,
        "summary": " | ".join(parts),
        "columns": columns,
        "sample": sample,
    }
