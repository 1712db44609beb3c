"""A BigQuery source's fingerprint (ExampleGen's cache key): the tables its SQL reads as BigQuery describes
them (identity, last-modified time, row count), so an unchanged table reuses the cached stages and a changed
one does not. The fake client (tests/bigquery_fake.py) answers ``get_table`` with the real client's Table."""

from __future__ import annotations

import pytest
from google.cloud import bigquery as bq

from ml_pipeline.data import bigquery
from ml_pipeline.errors import DataError
from ml_pipeline.reporting import InMemoryReporter
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.stages.example_gen import ExampleGen, source_fingerprint
from tests.bigquery_fake import TABLE, FakeBigQuery, table_described
from tests.execution import test_bigquery_source
from tests.execution.test_bigquery_source import bigquery_spec, duckdb_statement, local_spec, run_example_gen
from tests.execution.test_data_stages import spec_for

messy_source = test_bigquery_source.messy_source  # the fixture: purchases with rows every rule drops


@pytest.fixture
def fake(monkeypatch, messy_source):
    client = FakeBigQuery(twin_sql=duckdb_statement(messy_source, local_spec(messy_source)))
    monkeypatch.setattr(bigquery, "make_client", lambda source: client)
    monkeypatch.setenv(bigquery.EXPORT_URI_ENV, "memory://exports")
    return client


def returns_table(rows: int) -> bq.Table:
    reference = {"projectId": "my-project", "datasetId": "shop", "tableId": "returns"}
    return bq.Table.from_api_repr(
        {"tableReference": reference, "lastModifiedTime": "1764000000000", "numRows": str(rows)}
    )


def fingerprint_of(spec) -> str:
    return source_fingerprint(spec.dataset, None)


def test_an_unchanged_table_gives_the_same_fingerprint_and_its_example_gen_is_reused(tmp_path, fake, messy_source):
    spec = bigquery_spec(messy_source)
    assert fingerprint_of(spec) == fingerprint_of(spec)
    assert fingerprint_of(spec).startswith("bigquery:")
    first = run_example_gen(spec, tmp_path / "root")
    assert first.status == "completed", first.error
    exports = sum(c.sql.startswith("EXPORT DATA") for c in fake.calls)

    again = PipelineRunner(
        spec, tmp_path / "root", run_id="r2", reporter=InMemoryReporter(), stages={"ExampleGen": ExampleGen()}
    ).run()
    assert again.stages["ExampleGen"]["status"] == "cached"
    assert sum(c.sql.startswith("EXPORT DATA") for c in fake.calls) == exports  # nothing exported again


@pytest.mark.parametrize("change", [{"modified_ms": 1_764_000_060_000}, {"rows": 3004}], ids=["modified", "rows"])
def test_a_table_modified_since_or_with_other_rows_gives_another_fingerprint(fake, messy_source, change):
    spec = bigquery_spec(messy_source)
    before = fingerprint_of(spec)
    fake.tables[TABLE] = table_described(**change)
    assert fingerprint_of(spec) != before


def test_a_table_being_streamed_into_matches_nothing(fake, messy_source):
    fake.tables[TABLE] = table_described(streaming=True)
    spec = bigquery_spec(messy_source)
    assert fingerprint_of(spec).startswith("unavailable:") and fingerprint_of(spec) != fingerprint_of(spec)
    with pytest.raises(DataError, match="being streamed into"):
        bigquery.BigQueryRows(spec.dataset, fake).fingerprint()


def test_a_query_source_is_keyed_on_its_text_and_the_tables_the_dry_run_says_it_reads(fake, messy_source):
    other = "my-project.shop.returns"
    fake.tables[other] = returns_table(rows=12)
    dataset = bigquery_spec(messy_source).dataset.model_dump(mode="json")
    dataset["source"] = {"kind": "bigquery", "project": "my-project", "query": f"SELECT * FROM `{TABLE}`"}
    spec = spec_for(messy_source, dataset=dataset, stages=["ExampleGen"])
    before = fingerprint_of(spec)
    assert [c.sql for c in fake.calls[-2:]] == [f"get_table {TABLE}", f"get_table {other}"]
    fake.tables[other] = returns_table(rows=13)  # a table the query reads changed
    assert fingerprint_of(spec) != before
    dataset["source"]["query"] += " WHERE TRUE"
    assert fingerprint_of(spec_for(messy_source, dataset=dataset, stages=["ExampleGen"])) != fingerprint_of(spec)


def test_without_a_way_to_reach_bigquery_the_fingerprint_matches_nothing_and_does_not_raise(monkeypatch, messy_source):
    def unreachable(source):
        raise DataError("BigQuery cannot be reached: no credentials", field="source")

    monkeypatch.setattr(bigquery, "make_client", unreachable)
    spec = bigquery_spec(messy_source)
    assert fingerprint_of(spec).startswith("unavailable:") and fingerprint_of(spec) != fingerprint_of(spec)
