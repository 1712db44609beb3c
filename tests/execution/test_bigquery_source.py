"""A BigQuery source: one query builder for DuckDB and BigQuery, the export ExampleGen runs, the preview's
dry run and counts, and StatisticsGen's aggregates pushed down.

BigQuery cannot be reached from here: a fake of the client's interface (``query(sql, job_config=,
location=)`` -> a job with ``schema``, ``total_bytes_processed`` and ``result()``) records every call, and
answers an ``EXPORT DATA`` by writing what the DuckDB twin of the statement keeps to an in-memory fsspec
filesystem, as BigQuery would write Parquet to GCS.
"""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.cloud.bigquery.table import Row

from ml_pipeline.data import bigquery, sources
from ml_pipeline.data.query import BIGQUERY, DUCKDB, RowsQuery, aggregates_sql, read_aggregates
from ml_pipeline.reporting import InMemoryReporter
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.stages.compile import Compile
from ml_pipeline.stages.example_gen import ExampleGen
from tests.bigquery_fake import SCHEMA, TABLE, Call, FakeBigQuery
from tests.execution.test_data_stages import START, purchases, row, spec_for, with_rows, write

FILTERS = {"conditions": [{"column": "segment", "op": "ne", "value": "wholesale"}], "last_days": 90}


@pytest.fixture
def messy_source(tmp_path):
    """Purchases with rows every rule drops: a missing buyer ("NA"), a blank product, a wholesale buyer."""
    table = with_rows(
        purchases(),
        row(customer="NA", at=START + timedelta(days=100)),
        row(item="  ", at=START + timedelta(days=101)),
        row(customer=" c001 ", at=START + timedelta(days=102)),
    )
    return write(table, tmp_path / "purchases.parquet")


def local_spec(path):
    return spec_for(path, dataset__filters=FILTERS, stages=["ExampleGen"])


# What the fake answers the preview's counting query and its sample with.
COUNTS = Row(
    (3003, 1, 1, 0, 2000, 140, 80, START, START + timedelta(days=90), 140, 80, 3, 30, 7, 4),
    {f"f{i}": i for i in range(15)},
)
SAMPLE = Row(("c001", "p001"), {"buyer_id": 0, "product_id": 1})


def bigquery_spec(path):
    spec = local_spec(path)
    dataset = spec.dataset.model_dump(mode="json") | {
        "source": {"kind": "bigquery", "project": "my-project", "table": TABLE}
    }
    return spec_for(path, dataset=dataset, stages=["ExampleGen"])


def duckdb_statement(path, spec) -> str:
    """The builder's statement in DuckDB's dialect over the local file (its columns read by DuckDB)."""
    con = sources.connect()
    sources.register_source(con, spec.dataset.source)
    columns = sources.source_columns(con)
    con.close()
    query = RowsQuery(DUCKDB, columns, spec.dataset.mapping, spec.dataset.filters)
    return query.statement(f"SELECT * FROM read_parquet('{path}')")


def example_rows(result) -> dict[str, list[tuple]]:
    folder = result.artifacts["ExampleGen"].path
    return {split: sorted_rows(pq.read_table(folder / split)) for split in ("train", "eval", "test")}


def sorted_rows(table: pa.Table) -> list[tuple]:
    return sorted(tuple(r.values()) for r in table.to_pylist())


def run_example_gen(spec, root):
    return PipelineRunner(
        spec, root, run_id="r1", reporter=InMemoryReporter(), stages={"ExampleGen": ExampleGen()}
    ).run()


def test_the_shared_builders_sql_runs_on_duckdb_and_keeps_the_local_example_gens_rows(tmp_path, messy_source):
    spec = local_spec(messy_source)
    local = run_example_gen(spec, tmp_path / "root")
    assert local.status == "completed"
    kept = duckdb.sql(duckdb_statement(messy_source, spec))
    assert kept.columns == list(spec.dataset.mapping.output_columns())
    assert sorted_rows(kept.arrow().read_all()) == sorted(r for rows in example_rows(local).values() for r in rows)


def test_bigquery_is_asked_for_the_builders_statement_and_its_export_then_splits_as_locally(
    tmp_path, messy_source, monkeypatch
):
    spec = bigquery_spec(messy_source)
    fake = FakeBigQuery(twin_sql=duckdb_statement(messy_source, local_spec(messy_source)))
    monkeypatch.setattr(bigquery, "make_client", lambda source: fake)
    monkeypatch.setenv(bigquery.EXPORT_URI_ENV, "memory://exports")

    result = run_example_gen(spec, tmp_path / "bq-root")

    assert result.status == "completed", result.error
    assert example_rows(result) == example_rows(run_example_gen(local_spec(messy_source), tmp_path / "root"))
    fingerprint_call, table_call, schema_call, export_call = fake.calls  # the cache key first, then the run
    assert fingerprint_call == schema_call == Call(f"SELECT * FROM `{TABLE}`", True, "US")
    assert table_call.sql == f"get_table {TABLE}"
    statement = RowsQuery(BIGQUERY, bigquery.duck_types(SCHEMA), spec.dataset.mapping, spec.dataset.filters).statement(
        f"SELECT * FROM `{TABLE}`"
    )
    assert export_call.sql.startswith("EXPORT DATA OPTIONS (uri = 'memory://exports/r1/")
    assert "/part-*.parquet', format = 'PARQUET'" in export_call.sql
    assert export_call.sql.endswith(f"AS {statement}") and not export_call.dry_run


def test_the_statements_are_written_in_each_engines_own_dialect(messy_source):
    spec = local_spec(messy_source)
    columns = bigquery.duck_types(SCHEMA)
    duck = RowsQuery(DUCKDB, columns, spec.dataset.mapping, spec.dataset.filters).statement("SELECT 1")
    google = RowsQuery(BIGQUERY, columns, spec.dataset.mapping, spec.dataset.filters).statement("SELECT 1")
    assert '"timestamp"' in duck and "TRY_CAST" in duck and "EXCLUDE" in duck
    assert "`timestamp`" in google and "SAFE_CAST" in google and "EXCEPT" in google
    assert "TIMESTAMP_SUB((SELECT max(`timestamp`) FROM kept), INTERVAL 90 DAY)" in google
    assert "IN ('NA', 'N/A', 'null', 'NULL', 'nan')" in google and '"' not in google


def test_the_bigquery_preview_dry_runs_its_counting_query_for_the_bytes_first(messy_source):
    spec = bigquery_spec(messy_source)
    fake = FakeBigQuery(answers={"APPROX_COUNT_DISTINCT": [COUNTS], "LIMIT 10": [SAMPLE]})

    found = bigquery.BigQueryRows(spec.dataset, fake).preview()

    assert [c.dry_run for c in fake.calls] == [True, True, False, False]
    estimate, counting = fake.calls[1], fake.calls[2]
    assert estimate.sql == counting.sql and "APPROX_COUNT_DISTINCT(buyer_id)" in counting.sql
    assert "COUNTIF(buyer_id IS NULL)" in counting.sql and "APPROX_COUNT_DISTINCT(`pack_size`)" in counting.sql
    assert found["bytes_estimate"] == {"bytes": 3_500_000, "summary": "The preview scans 3.34 MB in BigQuery"}
    assert found["rows"] == 2000 and found["buyers"] == 140 and found["dropped_rows"] == 1003
    assert [d["reason"] for d in found["dropped"]] == ["no_buyer_id", "no_product_id", "filters"]
    assert found["summary"] == "2K rows | ~140 users | ~80 products | 3 months"
    assert found["distinct"] == {
        "buyer_id": 140,
        "product_id": 80,
        "segment": 3,
        "city": 30,
        "category": 7,
        "pack_size": 4,
    }
    assert found["sample"] == [{"buyer_id": "c001", "product_id": "p001"}]


def test_statistics_aggregates_pushed_down_match_those_of_the_exported_examples(tmp_path, messy_source):
    spec = local_spec(messy_source)
    kinds = spec.dataset.mapping.output_columns()
    local = run_example_gen(spec, tmp_path / "root")
    parts = f"read_parquet('{local.artifacts['ExampleGen'].path}/*/*.parquet')"
    on_examples = read_aggregates(
        kinds, duckdb.execute(aggregates_sql(DUCKDB, f"SELECT * FROM {parts}", kinds)).fetchone()
    )
    pushed = read_aggregates(
        kinds, duckdb.execute(aggregates_sql(DUCKDB, duckdb_statement(messy_source, spec), kinds)).fetchone()
    )
    assert pushed["num_examples"] == on_examples["num_examples"] == local.artifacts["ExampleGen"].properties["rows"]
    for name, found in pushed["columns"].items():
        for key, value in found.items():
            expected = on_examples["columns"][name][key]
            assert value == pytest.approx(expected) if isinstance(value, float) else value == expected, (name, key)

    twin_row = duckdb.execute(aggregates_sql(DUCKDB, duckdb_statement(messy_source, spec), kinds)).fetchone()
    fake = FakeBigQuery(answers={"AS aggregated_rows": [twin_row]})
    assert bigquery.BigQueryRows(bigquery_spec(messy_source).dataset, fake).aggregates() == pushed
    sent = fake.calls[-1].sql
    assert sent.startswith("SELECT count(*), count(`buyer_id`), APPROX_COUNT_DISTINCT(`buyer_id`)")
    assert "FROM (WITH source_rows AS (SELECT * FROM `my-project.shop.orders`)" in sent


def test_compile_checks_a_bigquery_mapping_against_the_dry_runs_schema_where_it_can_export(
    tmp_path, messy_source, monkeypatch
):
    spec = bigquery_spec(messy_source)
    dataset = spec.dataset.model_dump(mode="json")
    dataset["mapping"]["buyer_id"] = "customr"
    spec = spec_for(messy_source, dataset=dataset, stages=["Compile"])
    fake = FakeBigQuery()
    monkeypatch.setattr(bigquery, "make_client", lambda source: fake)
    monkeypatch.setenv(bigquery.EXPORT_URI_ENV, "gs://bucket/exports")

    result = PipelineRunner(spec, tmp_path / "root", stages={"Compile": Compile()}).run()

    assert result.status == "failed"
    assert (
        "dataset.mapping.buyer_id: column 'customr' is not in the source (did you mean 'customer'?)"
        in (result.error["message"])
    )
    assert [c.dry_run for c in fake.calls] == [True]
