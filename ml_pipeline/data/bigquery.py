"""Reading a BigQuery source through the real ``google-cloud-bigquery`` client.

The dataset's table or query, its mapping and its filters become ONE GoogleSQL statement, built by the
query builder the local DuckDB path uses (:class:`ml_pipeline.data.query.RowsQuery`), so BigQuery keeps
exactly the rows a local ExampleGen keeps. With it:

* ExampleGen runs ``EXPORT DATA … FORMAT = 'PARQUET'`` of that statement to GCS and splits the exported
  rows as it splits local ones (:meth:`BigQueryRows.export`);
* the dataset preview dry-runs its counting query first, for the bytes it would scan, then runs
  ``COUNT`` / ``APPROX_COUNT_DISTINCT`` over it (:meth:`BigQueryRows.estimate`, :meth:`BigQueryRows.preview`);
* StatisticsGen's per-column aggregates can be pushed down to BigQuery (:meth:`BigQueryRows.aggregates`).

Column types come from a dry run of the source's SQL (its schema, nothing scanned), translated to DuckDB's
names so the mapping checks are the local ones. A numeric timestamp's epoch unit is decided from a sample,
as locally; text timestamps are not sampled here (rows whose timestamp does not read are counted as dropped
in the preview).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from ml_pipeline.config.dataset import BigQuerySource, DatasetConfig
from ml_pipeline.data import splits
from ml_pipeline.data.query import BIGQUERY, RowsQuery
from ml_pipeline.data.sql import column_kind
from ml_pipeline.data.timestamps import SAMPLE, unit_by_magnitude
from ml_pipeline.errors import ConfigError, DataError
from ml_pipeline.spec import SplitConfig

# Where ExampleGen exports a BigQuery source's rows (gs://bucket/prefix): set on the remote runner's
# containers; where it is not set (this machine), BigQuery sources are refused at Compile.
EXPORT_URI_ENV = "BIGQUERY_EXPORT_URI"

# BigQuery (legacy and GoogleSQL names) -> the DuckDB type the mapping checks understand.
DUCK_TYPES = {
    "STRING": "VARCHAR",
    "BYTES": "BLOB",
    "INTEGER": "BIGINT",
    "INT64": "BIGINT",
    "FLOAT": "DOUBLE",
    "FLOAT64": "DOUBLE",
    "NUMERIC": "DECIMAL",
    "BIGNUMERIC": "DECIMAL",
    "BOOLEAN": "BOOLEAN",
    "BOOL": "BOOLEAN",
    "TIMESTAMP": "TIMESTAMP",
    "DATETIME": "TIMESTAMP",
    "DATE": "DATE",
    "TIME": "TIME",
    "JSON": "JSON",
}


# A mapped column's type, in DuckDB's names as the local preview gives them.
MAPPED_TYPES = {"string": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "timestamp": "TIMESTAMP"}


def export_uri() -> str | None:
    return os.environ.get(EXPORT_URI_ENV) or None


def make_client(source: BigQuerySource):
    """The real client for the source's project and location (credentials: Application Default)."""
    from google.cloud import bigquery

    try:
        return bigquery.Client(project=source.project, location=source.location)
    except Exception as error:  # google.auth's DefaultCredentialsError and kin: no way to reach BigQuery
        raise DataError(f"BigQuery cannot be reached: {_first_line(error)}", field="source") from None


def duck_types(schema) -> dict[str, str]:
    """Column name -> DuckDB type name, from a BigQuery schema (``SchemaField`` list)."""
    return {field.name: DUCK_TYPES.get(field.field_type.upper(), "VARCHAR") for field in schema}


def source_sql(source: BigQuerySource) -> str:
    """The source's rows as GoogleSQL: a scan of its table (in its project unless named), or its query."""
    if source.query:
        return source.query
    table = source.table if source.table.count(".") == 2 else f"{source.project}.{source.table}"
    return f"SELECT * FROM {BIGQUERY.ident(table)}"


def human_bytes(n: int) -> str:
    for threshold, suffix in ((1 << 40, "TB"), (1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "KB")):
        if n >= threshold:
            return f"{n / threshold:.3g} {suffix}"
    return f"{n} bytes"


@dataclass
class BigQueryRows:
    """A dataset's rows on BigQuery: the one statement, and what is run with it."""

    config: DatasetConfig
    client: object

    @classmethod
    def open(cls, config: DatasetConfig, client=None) -> BigQueryRows:
        return cls(config, client if client is not None else make_client(config.source))

    # -- running -------------------------------------------------------------------
    def _dry_run(self, sql: str):
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False)
        return self.client.query(sql, job_config=config, location=self.config.source.location)

    def _rows(self, sql: str) -> list:
        return list(self.client.query(sql, location=self.config.source.location).result())

    def run(self, sql: str) -> list:
        """Rows of a query (the pushed-down statistics'), with BigQuery's refusal as a DataError."""
        try:
            return self._rows(sql)
        except Exception as error:
            raise DataError(f"BigQuery refused a statistics query: {_first_line(error)}", field="source") from None

    # -- the statement ---------------------------------------------------------------
    def columns(self) -> dict[str, str]:
        try:
            job = self._dry_run(source_sql(self.config.source))
        except Exception as error:  # google.api_core errors: the query's own message names the fault
            raise DataError(f"BigQuery refused the source: {_first_line(error)}", field="source") from None
        return duck_types(job.schema)

    def _units(self, columns: dict[str, str]) -> dict[str, str]:
        mapping, units, problems = self.config.mapping, {}, []
        timestamp_columns = {"timestamp": mapping.timestamp} if mapping.timestamp else {}
        for group in ("buyer_features", "product_features"):
            for index, feature in enumerate(getattr(mapping, group)):
                if feature.dtype == "timestamp":
                    timestamp_columns[f"{group}[{index}].column"] = feature.column
        for field, column in timestamp_columns.items():
            unit = mapping.timestamp_unit if column == mapping.timestamp else "auto"
            if column_kind(columns[column]) not in ("int", "float") or unit != "auto":
                units[column] = unit
                continue
            col = BIGQUERY.ident(column)
            sample = (
                f"SELECT max(abs({col})) FROM (SELECT {col} FROM ({source_sql(self.config.source)}) "
                f"WHERE {col} IS NOT NULL LIMIT {SAMPLE * 10})"
            )
            units[column], found = unit_by_magnitude(self._rows(sample)[0][0], column, f"mapping.{field}")
            problems += found
        if problems:
            raise ConfigError(problems)
        return units

    def query(self) -> RowsQuery:
        """The shared builder for this dataset in GoogleSQL, after the local mapping checks."""
        from ml_pipeline.data.sources import check_mapping

        columns = self.columns()
        check_mapping(columns, self.config.mapping, self.config.filters)
        return RowsQuery(
            BIGQUERY, columns, self.config.mapping, self.config.filters, self._units(columns), self.config.as_of
        )

    def statement(self) -> str:
        return self.query().statement(source_sql(self.config.source))

    def split_relation(self, statement: str, split: SplitConfig, name: str) -> str:
        """The rows of split ``name`` of ``statement`` (the kept rows), split by ExampleGen's rule in GoogleSQL."""
        has_time = self.config.mapping.timestamp is not None
        return splits.split_relation(BIGQUERY, statement, split, name, has_time)

    def export_statement(self, uri: str) -> str:
        """``EXPORT DATA`` of the rows as Parquet files under ``uri`` (a gs:// folder)."""
        files = uri.rstrip("/") + "/part-*.parquet"
        return (
            f"EXPORT DATA OPTIONS (uri = {BIGQUERY.string(files)}, format = 'PARQUET', compression = 'ZSTD', "
            f"overwrite = true) AS {self.statement()}"
        )

    def export(self, uri: str) -> str:
        """Run the export; the glob of the files written."""
        sql = self.export_statement(uri)
        try:
            self.client.query(sql, location=self.config.source.location).result()
        except Exception as error:
            raise DataError(f"BigQuery could not export the rows: {_first_line(error)}", field="source") from None
        return uri.rstrip("/") + "/part-*.parquet"

    # -- the cache key -----------------------------------------------------------------
    def fingerprint(self) -> str:
        """What the source's rows depend on, as BigQuery reports it: the source's SQL and each table it reads
        (a view's own tables, from a dry run), with the table's last-modified time and row count. A table
        still being streamed into, or without those figures, has no stable fingerprint: DataError."""
        sql = source_sql(self.config.source)
        try:
            tables = [self.client.get_table(ref) for ref in self._dry_run(sql).referenced_tables or []]
        except Exception as error:  # google.api_core errors, no credentials: nothing to key on
            raise DataError(f"BigQuery cannot describe the source: {_first_line(error)}", field="source") from None
        described = []
        for table in tables:
            name = f"{table.project}.{table.dataset_id}.{table.table_id}"
            if table.streaming_buffer is not None or table.modified is None or table.num_rows is None:
                raise DataError(f"table {name} is being streamed into: its rows change meanwhile", field="source")
            described.append({"table": name, "modified": table.modified.isoformat(), "rows": int(table.num_rows)})
        text = json.dumps({"sql": sql, "tables": sorted(described, key=lambda t: t["table"])}, sort_keys=True)
        return f"bigquery:{hashlib.sha256(text.encode()).hexdigest()}"

    # -- the preview -----------------------------------------------------------------
    def preview_sql(self, query: RowsQuery | None = None) -> str:
        """One query counting what the preview shows: source rows, rows kept, why the others were dropped
        (the first reason each meets, as locally), approximate distinct buyers and products, the time span."""
        query = query or self.query()
        d, ts = BIGQUERY, BIGQUERY.ident("timestamp")
        has_time = self.config.mapping.timestamp is not None
        first = "buyer_id IS NULL"
        second = f"NOT ({first}) AND product_id IS NULL"
        third = f"NOT ({first}) AND NOT (product_id IS NULL) AND {ts} IS NULL" if has_time else "FALSE"
        span = f"MIN({ts}), MAX({ts})" if has_time else "NULL, NULL"
        distinct = "".join(f", {d.approx_distinct(d.ident(name))}" for name in self._distinct_columns())
        return (
            f"WITH {', '.join(query.ctes(source_sql(self.config.source)))} "
            "SELECT (SELECT COUNT(*) FROM source_rows), "
            f"(SELECT {d.count_if(first)} FROM mapped_source), "
            f"(SELECT {d.count_if(second)} FROM mapped_source), "
            f"(SELECT {d.count_if(third)} FROM mapped_source), "
            f"COUNT(*), {d.approx_distinct('buyer_id')}, {d.approx_distinct('product_id')}, {span}{distinct} "
            "FROM dataset_rows"
        )

    def _distinct_columns(self) -> list[str]:
        """The id, text and integer columns whose distinct values the preview counts (the vocabularies)."""
        return [
            name
            for name, dtype in self.config.mapping.output_columns().items()
            if dtype in ("string", "int") and name != "timestamp"
        ]

    def estimate(self, query: RowsQuery | None = None) -> dict:
        """What the preview would scan (a dry run: nothing read, nothing billed), to show before running it."""
        job = self._dry_run(self.preview_sql(query))
        scanned = int(job.total_bytes_processed or 0)
        return {"bytes": scanned, "summary": f"The preview scans {human_bytes(scanned)} in BigQuery"}

    def preview(self, sample_rows: int = 10) -> dict:
        """The counts (distinct counts approximate), a sample of the mapped rows and the byte estimate."""
        from ml_pipeline.data.preview import _jsonable, compact_count, describe_span

        query = self.query()
        estimate = self.estimate(query)
        (row,) = self._rows(self.preview_sql(query))
        values = list(row)
        source_rows, no_buyer, no_product, no_time, kept, buyers, products, first, last = values[:9]
        distinct = dict(zip(self._distinct_columns(), values[9:]))
        sample_sql = f"{query.statement(source_sql(self.config.source))} LIMIT {int(sample_rows)}"
        sample = [{k: _jsonable(v) for k, v in r.items()} for r in self._rows(sample_sql)]
        reasons = [
            ("no_buyer_id", no_buyer, "without a buyer id"),
            ("no_product_id", no_product, "without a product id"),
            ("no_timestamp", no_time, "without a readable timestamp"),
            ("filters", source_rows - kept - no_buyer - no_product - no_time, "left out by the filters"),
        ]
        parts = [
            f"{compact_count(kept)} rows",
            f"~{compact_count(buyers)} users",
            f"~{compact_count(products)} products",
        ]
        span_days = (last - first).total_seconds() / 86400 if first is not None and last is not None else None
        if span_days is not None:
            parts.append(describe_span(span_days))
        return {
            "source_rows": source_rows,
            "rows": kept,
            "dropped_rows": source_rows - kept,
            "dropped": [
                {"reason": r, "rows": n, "message": f"{n:,} {'row' if n == 1 else 'rows'} {label}"}
                for r, n, label in reasons
                if n
            ],
            "warnings": [],
            "buyers": buyers,
            "products": products,
            "distinct": distinct,
            "approximate": ["buyers", "products", "distinct"],
            "first_timestamp": _jsonable(first),
            "last_timestamp": _jsonable(last),
            "span_days": round(span_days, 2) if span_days is not None else None,
            "summary": " | ".join(parts),
            "columns": [
                {"name": name, "type": MAPPED_TYPES[dtype]}
                for name, dtype in self.config.mapping.output_columns().items()
            ],
            "sample": sample,
            "bytes_estimate": estimate,
        }

    # -- statistics pushed down --------------------------------------------------------
    def aggregates(self) -> dict[str, dict]:
        """StatisticsGen's per-column aggregates of the kept rows, computed in BigQuery (see
        :func:`ml_pipeline.data.query.aggregates_sql`)."""
        from ml_pipeline.data.query import aggregates_sql, read_aggregates

        query = self.query()
        kinds = self.config.mapping.output_columns()
        sql = aggregates_sql(BIGQUERY, query.statement(source_sql(self.config.source)), kinds)
        (row,) = self._rows(sql)
        return read_aggregates(kinds, list(row))


def _first_line(error: Exception) -> str:
    text = str(getattr(error, "message", "") or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
