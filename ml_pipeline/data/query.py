"""The one query builder: a dataset's mapping and filters as SQL, for DuckDB (local) and BigQuery.

Both the local path (the ``mapped_source`` and ``rows`` views of :mod:`ml_pipeline.data.sources`, which
the preview and ExampleGen read) and the BigQuery path (:mod:`ml_pipeline.data.bigquery`: the export
ExampleGen runs, the preview's counts, StatisticsGen's pushed-down aggregates) build their SQL here, so
the rules of a mapping — trimmed ids, the missing-id values, whole-number floats without their ".0", a
timestamp that must read, the filter conditions, "last N days" up to ``as_of`` or else the newest row — are
written once. A :class:`Dialect` renders the few things the two engines spell differently; everything else is
shared text.

Column types are DuckDB's names (``VARCHAR``, ``BIGINT``, ``DOUBLE``, ``TIMESTAMP``…); a BigQuery
schema is translated to them first (:func:`ml_pipeline.data.bigquery.duck_types`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from ml_pipeline.config.dataset import ColumnMapping, Filters
from ml_pipeline.data import sql
from ml_pipeline.data.sql import column_kind

MICROS = {"seconds": 1_000_000, "milliseconds": 1_000}
KEPT = "__kept_by_conditions"
_CONDITION_SQL = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
CONDITION_OPS = tuple(_CONDITION_SQL)
_WHOLE_NUMBER_TEXT = "^(-?[0-9]+)\\.0+$"
# RE2 (DuckDB's and BigQuery's regex engine) has \s for ASCII space only: \p{Z} adds no-break and the other
# Unicode spaces, \x{FEFF} a byte-order mark left at the start of a spreadsheet export.
_OUTER_SPACE = "^[\\s\\p{Z}\\x{FEFF}]+|[\\s\\p{Z}\\x{FEFF}]+$"


class Dialect:
    """DuckDB's spelling; :class:`BigQueryDialect` overrides what BigQuery spells otherwise."""

    name = "duckdb"
    types = {"string": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "wide_int": "HUGEINT", "timestamp": "TIMESTAMP"}

    def ident(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def string(self, text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    def regex(self, pattern: str) -> str:
        return self.string(pattern)

    def literal(self, value) -> str:
        return sql.literal(value, string=self.string, date_of=self.date)

    def date(self, value: date) -> str:
        return f"DATE {self.string(value.isoformat())}"

    def timestamp(self, value: datetime) -> str:
        return f"TIMESTAMP {self.string(value.isoformat(sep=' '))}"

    def literal_list(self, values) -> str:
        return "(" + ", ".join(self.literal(v) for v in values) + ")"

    def cast(self, expr: str, kind: str) -> str:
        return f"CAST({expr} AS {self.types[kind]})"

    def try_cast(self, expr: str, kind: str) -> str:
        return f"TRY_CAST({expr} AS {self.types[kind]})"

    def replace_all(self, expr: str, pattern: str, replacement: str) -> str:
        return f"regexp_replace({expr}, {self.regex(pattern)}, {self.regex(replacement)}, 'g')"

    def not_finite(self, number: str) -> str:
        return f"NOT isfinite({number})"

    def from_epoch_micros(self, micros: str) -> str:
        return f"TRY(make_timestamp(CAST({micros} AS BIGINT)))"

    def parse_timestamp(self, text: str, fmt: str) -> str:
        return f"try_strptime({text}, {self.string(fmt)})"

    def starts_with(self, text: str, prefix: str) -> str:
        return f"starts_with({text}, {self.string(prefix)})"

    def add_days(self, expr: str, days: int) -> str:
        return f"{expr} + INTERVAL {int(days)} DAY"

    def sub_days(self, expr: str, days: int) -> str:
        return f"{expr} - INTERVAL {int(days)} DAY"

    def star_except(self, column: str) -> str:
        return f"* EXCLUDE ({column})"

    def approx_distinct(self, expr: str) -> str:
        return f"approx_count_distinct({expr})"

    def count_if(self, condition: str) -> str:
        return f"count_if({condition})"

    # -- the split's hash (ml_pipeline.data.splits) --------------------------------
    def md5_lower64(self, text: str) -> str:
        """The MD5 digest's bytes 9-16 read little-endian, as an unsigned 64-bit number."""
        return f"md5_number_lower({text})"

    def join_text(self, parts: list[str], separator: str = "|") -> str:
        return f"concat_ws({self.string(separator)}, {', '.join(parts)})"

    def timestamp_text(self, expr: str) -> str:
        """A TIMESTAMP as text: 2011-01-31 08:26:00, fractional seconds only where there are some."""
        return f"CAST({expr} AS VARCHAR)"

    def mod(self, expr: str, divisor: int) -> str:
        return f"({expr} % {int(divisor)})"

    def int_div(self, expr: str, divisor: int) -> str:
        return f"({expr} // {int(divisor)})"

    def approx_quantiles(self, expr: str, buckets: int) -> str:
        """An array of ``buckets + 1`` approximate quantiles, the minimum and the maximum included."""
        return f"approx_quantile({expr}, {[round(i / buckets, 6) for i in range(buckets + 1)]})"

    def epoch_seconds(self, expr: str) -> str:
        return f"CAST(floor(epoch(CAST({expr} AS TIMESTAMP))) AS DOUBLE)"


class BigQueryDialect(Dialect):
    """GoogleSQL: backquoted names, backslash escapes, SAFE_ casts, TIMESTAMP_ functions."""

    name = "bigquery"
    types = {"string": "STRING", "int": "INT64", "float": "FLOAT64", "wide_int": "BIGNUMERIC", "timestamp": "TIMESTAMP"}

    def ident(self, name: str) -> str:
        return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"

    def string(self, text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"

    def regex(self, pattern: str) -> str:
        return "r'" + pattern + "'"  # the patterns are ours (no quote in them): raw, as RE2 reads them

    def date(self, value: date) -> str:
        return f"TIMESTAMP {self.string(value.isoformat())}"  # compared with TIMESTAMPs, which BigQuery won't mix

    def try_cast(self, expr: str, kind: str) -> str:
        return f"SAFE_CAST({expr} AS {self.types[kind]})"

    def replace_all(self, expr: str, pattern: str, replacement: str) -> str:
        return f"REGEXP_REPLACE({expr}, {self.regex(pattern)}, {self.regex(replacement)})"

    def not_finite(self, number: str) -> str:
        return f"(IS_INF({number}) OR IS_NAN({number}))"

    def from_epoch_micros(self, micros: str) -> str:
        return f"SAFE.TIMESTAMP_MICROS(SAFE_CAST({micros} AS INT64))"

    def parse_timestamp(self, text: str, fmt: str) -> str:
        return f"SAFE.PARSE_TIMESTAMP({self.string(fmt)}, {text})"

    def starts_with(self, text: str, prefix: str) -> str:
        return f"STARTS_WITH({text}, {self.string(prefix)})"

    def add_days(self, expr: str, days: int) -> str:
        return f"TIMESTAMP_ADD({expr}, INTERVAL {int(days)} DAY)"

    def sub_days(self, expr: str, days: int) -> str:
        return f"TIMESTAMP_SUB({expr}, INTERVAL {int(days)} DAY)"

    def star_except(self, column: str) -> str:
        return f"* EXCEPT ({column})"

    def approx_distinct(self, expr: str) -> str:
        return f"APPROX_COUNT_DISTINCT({expr})"

    def count_if(self, condition: str) -> str:
        return f"COUNTIF({condition})"

    def md5_lower64(self, text: str) -> str:
        # GoogleSQL has no unsigned 64-bit integer: the two 32-bit halves of the (reversed, so big-endian)
        # bytes, combined as a BIGNUMERIC, exact.
        hexed = f"TO_HEX(REVERSE(SUBSTR(MD5({text}), 9, 8)))"
        high = f"CAST(CONCAT('0x', SUBSTR({hexed}, 1, 8)) AS INT64)"
        low = f"CAST(CONCAT('0x', SUBSTR({hexed}, 9, 8)) AS INT64)"
        return f"(CAST({high} AS BIGNUMERIC) * 4294967296 + {low})"

    def join_text(self, parts: list[str], separator: str = "|") -> str:
        return f"ARRAY_TO_STRING([{', '.join(parts)}], {self.string(separator)})"

    def timestamp_text(self, expr: str) -> str:
        return f"FORMAT_TIMESTAMP('%Y-%m-%d %H:%M:%E*S', {expr}, 'UTC')"

    def mod(self, expr: str, divisor: int) -> str:
        return f"MOD({expr}, {int(divisor)})"

    def int_div(self, expr: str, divisor: int) -> str:
        return f"DIV({expr}, {int(divisor)})"

    def approx_quantiles(self, expr: str, buckets: int) -> str:
        return f"APPROX_QUANTILES({expr}, {int(buckets)})"

    def epoch_seconds(self, expr: str) -> str:
        return f"CAST(UNIX_SECONDS({expr}) AS FLOAT64)"


DUCKDB = Dialect()
BIGQUERY = BigQueryDialect()


def timestamp_expr(d: Dialect, column: str, duck_type: str, unit: str = "auto", fmt: str | None = None) -> str:
    """SQL reading ``column`` as a TIMESTAMP (NULL where a value does not read); ``unit`` is resolved."""
    col = d.ident(column)
    kind = column_kind(duck_type)
    if kind == "timestamp":
        return d.try_cast(col, "timestamp")
    text = f"trim({d.cast(col, 'string')})"
    if kind in ("int", "float") or unit != "auto":
        number = col if kind in ("int", "float") else d.try_cast(text, "float")
        factor = MICROS[unit if unit != "auto" else "seconds"]
        return d.from_epoch_micros(f"round({number} * {factor})")
    if fmt:
        return d.parse_timestamp(text, fmt)
    return d.try_cast(text, "timestamp")


def _trimmed(d: Dialect, col: str) -> str:
    """Leading and trailing whitespace of any kind (tabs, newlines, no-break spaces, a BOM) removed."""
    return d.replace_all(d.cast(col, "string"), _OUTER_SPACE, "")


def id_expr(d: Dialect, column: str, duck_type: str, missing: list[str] | None = None) -> str:
    """An id column as trimmed strings, NULL where missing: blank, whitespace-only or one of ``missing``
    ("NA", "null", ..., as written or once normalised). Whole-number floats lose their ".0" ("17850.0" ->
    "17850"), in a float column or written so in a text one; a NaN is missing.
    """
    col = d.ident(column)
    kind = column_kind(duck_type)
    trimmed = _trimmed(d, col)
    if kind == "float":
        whole = d.cast(d.try_cast(col, "wide_int"), "string")
        number = d.cast(col, "float")
        normalised = (
            f"CASE WHEN {d.not_finite(number)} THEN NULL WHEN {col} = floor({col}) THEN {whole} "
            f"ELSE {d.cast(col, 'string')} END"
        )
    elif kind == "int":
        normalised = d.cast(col, "string")
    else:
        normalised = (
            f"CASE WHEN {trimmed} = '' THEN NULL ELSE {d.replace_all(trimmed, _WHOLE_NUMBER_TEXT, chr(92) + '1')} END"
        )
    if not missing:
        return normalised
    listed = d.literal_list(missing)
    return f"CASE WHEN {trimmed} IN {listed} OR ({normalised}) IN {listed} THEN NULL ELSE {normalised} END"


def id_columns(mapping: ColumnMapping) -> list[tuple[str, str]]:
    """(role, source column) of the two ids."""
    return [("buyer_id", mapping.buyer_id), ("product_id", mapping.product_id)]


def id_lookup_sql(d: Dialect, role: str, column: str, duck_type: str, missing: list[str] | None) -> str:
    """Each distinct value of an id column beside its mapped id (:func:`id_expr`), as ``__<role>_raw`` and
    ``__<role>_mapped`` (role: ``buyer_id`` or ``product_id``).

    Joined to the source rows (``RowsQuery.id_lookups``) in place of evaluating :func:`id_expr` on every
    row, so its regexes run once per distinct id. Inline they ran several times per row (the expression
    repeats its trimmed value, and DuckDB's filter pushdown repeats the expression): ExampleGen's time grew
    16x per 10x rows once a file's ids were no longer dictionary-encoded; with the lookup, 11x.
    """
    col = d.ident(column)
    return (
        f"SELECT {col} AS {d.ident(f'__{role}_raw')}, {id_expr(d, column, duck_type, missing)} "
        f"AS {d.ident(f'__{role}_mapped')} FROM (SELECT DISTINCT {col} FROM source_rows) AS distinct_ids"
    )


def feature_expr(d: Dialect, column: str, dtype: str, duck_type: str, units: dict[str, str]) -> str:
    col = d.ident(column)
    if dtype == "string":
        if column_kind(duck_type) == "float":
            return id_expr(d, column, duck_type)
        return f"NULLIF(trim({d.cast(col, 'string')}), '')"
    if dtype == "timestamp":
        return timestamp_expr(d, column, duck_type, units.get(column, "auto"))
    return d.try_cast(col, dtype)


def _value_sql(d: Dialect, value, duck_type: str) -> str:
    """A filter value as a literal of its column's kind: '536365' for a text column, 5 for a number."""
    kind = column_kind(duck_type)
    if duck_type.upper() == "BOOLEAN":
        return d.literal(value if isinstance(value, bool) else str(value).lower() == "true")
    if kind in ("int", "float"):
        number = value if isinstance(value, (int, float)) else float(str(value))
        return d.literal(int(number) if isinstance(number, float) and number.is_integer() else number)
    if kind == "timestamp":
        return f"CAST({d.string(str(value))} AS TIMESTAMP)"
    return d.literal(value if isinstance(value, str) else str(value))


def condition_sql(d: Dialect, condition, duck_type: str) -> str:
    col = d.ident(condition.column)
    if condition.op in _CONDITION_SQL:
        return f"{col} {_CONDITION_SQL[condition.op]} {_value_sql(d, condition.value, duck_type)}"
    if condition.op in ("in", "not_in"):
        values = "(" + ", ".join(_value_sql(d, v, duck_type) for v in condition.value) + ")"
        if condition.op == "in":
            return f"{col} IN {values}"
        return f"({col} IS NULL OR {col} NOT IN {values})"
    if condition.op == "starts_with":
        return d.starts_with(d.cast(col, "string"), condition.value)
    if condition.op == "not_starts_with":
        return f"NOT coalesce({d.starts_with(d.cast(col, 'string'), condition.value)}, FALSE)"
    if condition.op == "is_null":
        return f"{col} IS NULL"
    return f"{col} IS NOT NULL"


@dataclass(frozen=True)
class RowsQuery:
    """A dataset's mapped, filtered rows as SQL over a relation of its source rows, in one dialect.

    ``columns`` are the source's column types (DuckDB names), ``units`` the resolved epoch unit of each
    numeric timestamp column.
    """

    dialect: Dialect
    columns: dict[str, str]
    mapping: ColumnMapping
    filters: Filters
    units: dict[str, str] = field(default_factory=dict)
    as_of: datetime | None = None  # the data as of then: "last N days" ends there, no row after it (naive UTC)
    id_lookups: dict[str, str] = field(default_factory=dict)  # role -> relation of id_lookup_sql (DuckDB)

    def mapped_source(self, source: str = "source_rows") -> str:
        """Every source row mapped (none dropped yet), with whether the filter conditions keep it."""
        d, mapping, columns = self.dialect, self.mapping, self.columns
        select, joins = [], []
        for role, column in id_columns(mapping):
            lookup = self.id_lookups.get(role)
            if lookup is None:
                select.append(f"{id_expr(d, column, columns[column], mapping.missing_ids)} AS {role}")
                continue
            raw, mapped = d.ident(f"__{role}_raw"), d.ident(f"__{role}_mapped")
            select.append(f"{lookup}.{mapped} AS {role}")
            joins.append(f" LEFT JOIN {lookup} ON {source}.{d.ident(column)} = {lookup}.{raw}")
        if mapping.timestamp:
            unit = self.units.get(mapping.timestamp, mapping.timestamp_unit)
            expr = timestamp_expr(d, mapping.timestamp, columns[mapping.timestamp], unit, mapping.timestamp_format)
            select.append(f"{expr} AS {d.ident('timestamp')}")
        if mapping.target:
            select.append(f"{d.try_cast(d.ident(mapping.target), 'float')} AS target")
        for feature in [*mapping.buyer_features, *mapping.product_features]:
            expr = feature_expr(d, feature.column, feature.dtype, columns[feature.column], self.units)
            select.append(f"{expr} AS {d.ident(feature.column)}")
        conditions = " AND ".join(condition_sql(d, c, columns[c.column]) for c in self.filters.conditions) or "TRUE"
        select.append(f"coalesce({conditions}, FALSE) AS {KEPT}")
        return f"SELECT {', '.join(select)} FROM {source}{''.join(joins)}"

    def _kept(self, mapped: str) -> str:
        d, filters, ts = self.dialect, self.filters, self.dialect.ident("timestamp")
        where = ["buyer_id IS NOT NULL", "product_id IS NOT NULL", KEPT]
        if self.mapping.timestamp:
            where.append(f"{ts} IS NOT NULL")
        if filters.date_from:
            where.append(f"{ts} >= {d.date(filters.date_from)}")
        if filters.date_to:
            where.append(f"{ts} < {d.add_days(d.date(filters.date_to), 1)}")
        if filters.include_buyers:
            where.append(f"buyer_id IN {d.literal_list(filters.include_buyers)}")
        if filters.exclude_buyers:
            where.append(f"buyer_id NOT IN {d.literal_list(filters.exclude_buyers)}")
        return f"SELECT {d.star_except(KEPT)} FROM {mapped} WHERE {' AND '.join(where)}"

    def _last_days(self, kept: str) -> str:
        # "Last N days" is (end - N days, end]: end is ``as_of`` (a scheduled run's scheduled time, so the
        # window does not move with when the run got to it, nor take rows from after it), else the newest
        # row, so a historical export still yields data; the window is computed after the other filters.
        d, ts = self.dialect, self.dialect.ident("timestamp")
        if self.as_of is not None:
            end = d.timestamp(self.as_of)
            return f"SELECT * FROM {kept} WHERE {ts} > {d.sub_days(end, self.filters.last_days)} AND {ts} <= {end}"
        newest = f"(SELECT max({ts}) FROM {kept})"
        return f"SELECT * FROM {kept} WHERE {ts} > {d.sub_days(newest, self.filters.last_days)}"

    def rows(self, mapped: str = "mapped_source") -> str:
        """The rows kept from ``mapped``: ids (and a timestamp) present, filters passed."""
        sql = self._kept(mapped)
        if self.filters.last_days:
            sql = f"WITH kept AS ({sql}) {self._last_days('kept')}"
        elif self.as_of is not None:  # the data as of then (a time_holdout split's end): nothing after it
            d = self.dialect
            sql = f"SELECT * FROM ({sql}) AS kept WHERE {d.ident('timestamp')} <= {d.timestamp(self.as_of)}"
        return sql

    def ctes(self, source_sql: str) -> list[str]:
        """The steps from the source's own SQL to the kept rows, as named subqueries ending in ``dataset_rows``
        (``source_rows``, ``mapped_source``…): for a statement that goes on to count or aggregate them."""
        ctes = [f"source_rows AS ({source_sql})", f"mapped_source AS ({self.mapped_source()})"]
        if self.filters.last_days:
            ctes += [f"kept AS ({self._kept('mapped_source')})", f"dataset_rows AS ({self._last_days('kept')})"]
        else:
            ctes.append(f"dataset_rows AS ({self._kept('mapped_source')})")
        return ctes

    def statement(self, source_sql: str) -> str:
        """One statement from the source's own SQL (a table scan or the user's query) to the kept rows: what
        BigQuery runs and exports, and what the local views compose."""
        return f"WITH {', '.join(self.ctes(source_sql))} SELECT * FROM dataset_rows"


# -- aggregates (StatisticsGen's, pushed down) ------------------------------------------
def _aggregate_terms(d: Dialect, name: str, kind: str) -> list[tuple[str, str]]:
    col = d.ident(name)
    if kind == "string":
        return [("unique", d.approx_distinct(col)), ("avg_length", f"avg(length({col}))")]
    if kind == "timestamp":
        return [("min", f"min({col})"), ("max", f"max({col})")]
    number = d.cast(col, "float")
    value = f"CASE WHEN {d.not_finite(number)} THEN NULL ELSE {number} END"
    return [
        ("mean", f"avg({value})"),
        ("std", f"stddev_pop({value})"),
        ("min", f"min({value})"),
        ("max", f"max({value})"),
        ("zeros", f"{d.count_if(f'{value} = 0')}"),
    ]


def aggregates_sql(d: Dialect, rows_sql: str, kinds: dict[str, str]) -> str:
    """One scan of ``rows_sql`` computing, per output column of kind ``kinds[name]``, what StatisticsGen's
    summary reports: present count, and mean/std/min/max/zeros (numbers), min/max (timestamps) or distinct
    values and average length (text; distinct is approximate in both engines)."""
    terms = ["count(*)"]
    for name, kind in kinds.items():
        terms.append(f"count({d.ident(name)})")
        terms += [term for _, term in _aggregate_terms(d, name, kind)]
    return f"SELECT {', '.join(terms)} FROM ({rows_sql}) AS aggregated_rows"


def read_aggregates(kinds: dict[str, str], row: list) -> dict:
    """The row of :func:`aggregates_sql` as ``{"num_examples", "columns": {name: {"count", "missing", …}}}``."""
    values = iter(row)
    total = int(next(values))
    columns = {}
    for name, kind in kinds.items():
        present = int(next(values))
        found = {"type": kind, "count": present, "missing": total - present}
        for key, _ in _aggregate_terms(DUCKDB, name, kind):
            value = next(values)
            found[key] = value
        columns[name] = found
    return {"num_examples": total, "columns": columns}
