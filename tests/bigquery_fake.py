"""A fake of the google-cloud-bigquery client's interface, for tests: BigQuery cannot be reached from here.

``query(sql, job_config=, location=)`` -> a job with ``schema``, ``total_bytes_processed`` and ``result()``.
Every call is recorded; a dry run answers with the table's schema; an ``EXPORT DATA`` is answered by writing
what the DuckDB twin of the statement keeps to the fsspec URL it names (as BigQuery writes Parquet to GCS);
any other query by the canned rows of the first marker its SQL contains.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from google.cloud import bigquery as bq

TABLE = "my-project.shop.orders"
SCHEMA = [
    bq.SchemaField(name, kind)
    for name, kind in [
        ("customer", "STRING"),
        ("item", "STRING"),
        ("ordered_at", "TIMESTAMP"),
        ("qty", "INTEGER"),
        ("price", "FLOAT"),
        ("segment", "STRING"),
        ("city", "STRING"),
        ("category", "STRING"),
        ("pack_size", "INTEGER"),
    ]
]


@dataclass
class Call:
    sql: str
    dry_run: bool
    location: str | None


@dataclass
class FakeJob:
    schema: list = field(default_factory=list)
    total_bytes_processed: int | None = None
    rows: list = field(default_factory=list)

    def result(self):
        return iter(self.rows)


class FakeBigQuery:
    """Records every query; answers dry runs with the table's schema, EXPORT DATA from the DuckDB twin."""

    def __init__(self, twin_sql: str = "", answers: dict[str, list] | None = None):
        self.calls: list[Call] = []
        self.twin_sql, self.answers = twin_sql, answers or {}

    def query(self, sql, job_config=None, location=None):
        dry = bool(job_config is not None and job_config.dry_run)
        self.calls.append(Call(sql, dry, location))
        if dry:
            return FakeJob(schema=SCHEMA, total_bytes_processed=3_500_000)
        if sql.startswith("EXPORT DATA"):
            uri = sql.split("uri = '", 1)[1].split("'", 1)[0].replace("*", "0")
            table = duckdb.sql(self.twin_sql).arrow()
            if hasattr(table, "read_all"):
                table = table.read_all()
            at = table.schema.get_field_index("timestamp")
            table = table.set_column(at, "timestamp", table["timestamp"].cast(pa.timestamp("us", tz="UTC")))
            with fsspec.open(uri, "wb") as handle:  # BigQuery's TIMESTAMPs are UTC in the Parquet it writes
                pq.write_table(table, handle)
            return FakeJob()
        for marker, rows in self.answers.items():
            if marker in sql:
                return FakeJob(rows=rows)
        raise AssertionError(f"unexpected query: {sql[:80]}")
