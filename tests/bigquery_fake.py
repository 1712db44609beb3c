"""A fake of the google-cloud-bigquery client's interface, for tests: BigQuery cannot be reached from here.

``query(sql, job_config=, location=)`` -> a job with ``schema``, ``total_bytes_processed`` and ``result()``.
Every call is recorded; a dry run answers with the table's schema and the tables it reads, ``get_table`` with
``tables`` (the table's last-modified time and row count); an ``EXPORT DATA`` is answered by writing
what the DuckDB twin of the statement keeps to the fsspec URL it names (as BigQuery writes Parquet to GCS);
any other query by the canned rows of the first marker its SQL contains, or else by the next of ``replies``
(the rows its DuckDB twin gave, in the order the twin's queries ran).
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


def table_described(modified_ms: int = 1_764_000_000_000, rows: int = 3003, streaming: bool = False) -> bq.Table:
    """The table as ``get_table`` describes it (the real client's Table, from the API's JSON)."""
    project, dataset, table = TABLE.split(".")
    resource = {
        "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
        "lastModifiedTime": str(modified_ms),
        "numRows": str(rows),
    }
    if streaming:
        resource["streamingBuffer"] = {"estimatedRows": "12", "oldestEntryTime": str(modified_ms)}
    return bq.Table.from_api_repr(resource)


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
    referenced_tables: list = field(default_factory=list)

    def result(self):
        return iter(self.rows)


class FakeBigQuery:
    """Records every query; answers dry runs with the table's schema, EXPORT DATA from the DuckDB twin."""

    def __init__(self, twin_sql: str = "", answers: dict[str, list] | None = None, replies: list | None = None):
        self.calls: list[Call] = []
        self.twin_sql, self.answers, self.replies = twin_sql, answers or {}, list(replies or [])
        self.tables = {TABLE: table_described()}  # what get_table answers, by full name

    def get_table(self, ref):
        self.calls.append(Call(f"get_table {ref.project}.{ref.dataset_id}.{ref.table_id}", False, None))
        return self.tables[f"{ref.project}.{ref.dataset_id}.{ref.table_id}"]

    def query(self, sql, job_config=None, location=None):
        dry = bool(job_config is not None and job_config.dry_run)
        self.calls.append(Call(sql, dry, location))
        if dry:
            return FakeJob(
                schema=SCHEMA,
                total_bytes_processed=3_500_000,
                referenced_tables=[bq.TableReference.from_string(name) for name in self.tables],
            )
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
        if self.replies:
            return FakeJob(rows=self.replies.pop(0))
        raise AssertionError(f"unexpected query: {sql[:80]}")
