"""Reading a column as timestamps: temporal types, Unix epochs (seconds or milliseconds), or text.

A column mapped as the timestamp must really read as one: text that does not
parse is refused with a sample value, where it used to become NULL everywhere
and leave "0 rows" with no reason given.
"""

from __future__ import annotations

import duckdb

from ml_pipeline.config.dataset import ColumnMapping
from ml_pipeline.data import query
from ml_pipeline.data.sql import column_kind, ident
from ml_pipeline.errors import Problem

# Unix seconds below this are before March 1973: a count or a quantity, not a time.
MIN_PLAUSIBLE_SECONDS = 1e8
MAX_SECONDS = 1e11  # year 5138: larger values are milliseconds
MAX_MILLISECONDS = 1e14
SAMPLE = 1000


def timestamp_expr(column: str, duck_type: str, unit: str = "auto", fmt: str | None = None) -> str:
    """SQL reading ``column`` as a TIMESTAMP in DuckDB (NULL where a value does not read); ``unit`` is resolved."""
    return query.timestamp_expr(query.DUCKDB, column, duck_type, unit, fmt)


def _shown(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def resolve_unit(con, column: str, duck_type: str, unit: str, field: str) -> tuple[str, list[Problem]]:
    """The epoch unit of a numeric column ('auto' decided by the magnitude of a sample of its values)."""
    if column_kind(duck_type) not in ("int", "float") or unit != "auto":
        return unit, []
    col = ident(column)
    largest = con.execute(
        f"SELECT max(abs({col})) FROM (SELECT {col} FROM source_rows WHERE {col} IS NOT NULL LIMIT {SAMPLE * 10})"
    ).fetchone()[0]
    return unit_by_magnitude(largest, column, field)


def unit_by_magnitude(largest, column: str, field: str) -> tuple[str, list[Problem]]:
    """The epoch unit that the largest value of a sample reads in (any engine's sample)."""
    if largest is None:
        return "seconds", []
    if largest < MIN_PLAUSIBLE_SECONDS:
        return "seconds", [
            Problem(
                field,
                f"column '{column}' holds numbers such as {_shown(largest)}, too small for Unix timestamps "
                "(set timestamp_unit to read them as seconds anyway)",
            )
        ]
    if largest < MAX_SECONDS:
        return "seconds", []
    if largest < MAX_MILLISECONDS:
        return "milliseconds", []
    return "seconds", [
        Problem(field, f"column '{column}' holds numbers such as {_shown(largest)}, too large for Unix seconds or ms")
    ]


def check_text_timestamps(con, column: str, duck_type: str, mapping: ColumnMapping, field: str) -> list[Problem]:
    """A text column must parse: refused when fewer than half of a sample of its values read as timestamps."""
    if column_kind(duck_type) != "string":
        return []
    col = ident(column)
    own = column == mapping.timestamp  # the unit and format are the timestamp role's
    unit, fmt = (mapping.timestamp_unit, mapping.timestamp_format) if own else ("auto", None)
    parsed = timestamp_expr("v", duck_type, unit, fmt)
    try:
        values = con.execute(
            f"SELECT v, {parsed} IS NOT NULL FROM (SELECT {col} AS v FROM source_rows "
            f"WHERE nullif(trim(CAST({col} AS VARCHAR)), '') IS NOT NULL LIMIT {SAMPLE})"
        ).fetchall()
    except duckdb.InvalidInputException:
        if not fmt:
            raise
        return [Problem("mapping.timestamp_format", f"'{fmt}' is not a strptime format")]
    failed = [value for value, reads in values if not reads]
    if not values or len(failed) * 2 <= len(values):
        return []
    if unit != "auto":
        return [Problem(field, f"column '{column}' holds values such as '{_shown(failed[0])}', not Unix {unit}")]
    if fmt:
        return [
            Problem(
                "mapping.timestamp_format",
                f"values of '{column}' such as '{_shown(failed[0])}' do not match '{mapping.timestamp_format}'",
            )
        ]
    return [
        Problem(
            field,
            f"column '{column}' is text that does not read as timestamps (e.g. '{_shown(failed[0])}'); "
            "if it is a date written another way, give timestamp_format (e.g. '%d/%m/%Y %H:%M')",
        )
    ]
