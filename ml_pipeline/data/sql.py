"""Quoting helpers for the SQL we build for DuckDB.

Values end up inside view definitions, where DuckDB cannot bind parameters,
so they are rendered as literals here, in one place, with proper escaping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime


def ident(name: str) -> str:
    """Quote an identifier: ``Quantity`` -> ``"Quantity"``, escaping embedded quotes."""
    return '"' + name.replace('"', '""') + '"'


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def date_literal(value: date) -> str:
    return f"DATE {quote(value.isoformat())}"


def literal(value, string: Callable[[str], str] = quote, date_of: Callable[[date], str] = date_literal) -> str:
    """Render a Python value as a DuckDB literal; another dialect passes its own string and date spelling
    (:class:`ml_pipeline.data.query.BigQueryDialect`)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value}")
        return repr(value)
    if isinstance(value, datetime):
        return f"TIMESTAMP {string(value.isoformat(sep=' '))}"
    if isinstance(value, date):
        return date_of(value)
    return string(str(value))


def literal_list(values) -> str:
    return "(" + ", ".join(literal(v) for v in values) + ")"


INT_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "BOOLEAN",
}
FLOAT_TYPES = {"FLOAT", "DOUBLE", "REAL", "DECIMAL"}


def column_kind(duck_type: str) -> str:
    """How a column of a DuckDB type is described: "int", "float", "timestamp" or "string"."""
    base = duck_type.split("(")[0].upper()
    if base in INT_TYPES:
        return "int"
    if base in FLOAT_TYPES:
        return "float"
    if base.startswith(("TIMESTAMP", "DATE")):
        return "timestamp"
    return "string"
