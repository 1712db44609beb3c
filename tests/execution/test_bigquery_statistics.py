"""StatisticsGen pushed down to BigQuery: the split rule in both dialects, and statistics that describe the
rows ExampleGen put in each split.

BigQuery cannot be reached from here: the fake client (tests/bigquery_fake.py) answers each GoogleSQL
statistics query with what its DuckDB twin (the same builders in DuckDB's dialect) returned, in order; the
GoogleSQL text itself is inspected.
"""

from __future__ import annotations

import hashlib
import json

import duckdb
import pyarrow.parquet as pq
import pytest

from ml_pipeline.data import bigquery, splits
from ml_pipeline.data.query import BIGQUERY, DUCKDB
from ml_pipeline.reporting import InMemoryReporter
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.stages.example_gen import ExampleGen
from ml_pipeline.stages.statistics_gen import StatisticsGen, StatisticsGenParams, _collect, _SplitStatistics
from tests.bigquery_fake import FakeBigQuery
from tests.execution import test_bigquery_source
from tests.execution.test_bigquery_source import FILTERS, duckdb_statement
from tests.execution.test_data_stages import spec_for

SPLIT = {"sample_percent": 70.0, "seed": 11}
STAGES = ["ExampleGen", "StatisticsGen"]
messy_source = test_bigquery_source.messy_source  # the fixture: purchases with rows every rule drops


def local_spec(path, **split):
    return spec_for(path, dataset__filters=FILTERS, split=SPLIT | split, stages=STAGES)


def bigquery_spec(path, **split):
    spec = local_spec(path, **split)
    dataset = spec.dataset.model_dump(mode="json") | {
        "source": {"kind": "bigquery", "project": "my-project", "table": "my-project.shop.orders"}
    }
    return spec_for(path, dataset=dataset, split=SPLIT | split, stages=STAGES)


def run_pipeline(spec, root):
    stages = {"ExampleGen": ExampleGen(), "StatisticsGen": StatisticsGen()}
    return PipelineRunner(spec, root, run_id="r1", reporter=InMemoryReporter(), stages=stages).run()


def summary_of(result) -> dict:
    return json.loads((result.artifacts["StatisticsGen"].path / "summary.json").read_text())


def without_medians(summary: dict) -> dict:
    """Medians are approximate (t-digest) and depend on the order rows arrive in; everything else is exact."""
    return {
        split: {name: {k: v for k, v in c.items() if k != "median"} for name, c in found["columns"].items()}
        | {"num_examples": found["num_examples"]}
        for split, found in summary["splits"].items()
    }


def twin_statistics(path, spec) -> tuple[dict, list]:
    """The pushed-down statistics computed with the DuckDB rendering of the same SQL; and each query's rows."""
    replies, statement = [], duckdb_statement(path, spec)
    has_time = spec.dataset.mapping.timestamp is not None
    columns = list(spec.dataset.mapping.output_columns().items())

    def run(sql):
        replies.append(duckdb.sql(sql).fetchall())
        return replies[-1]

    computed = [
        _SplitStatistics(
            run, DUCKDB, splits.split_relation(DUCKDB, statement, spec.split, name, has_time), columns, name, params
        )
        for name, params in ((name, StatisticsGenParams()) for name in ("train", "eval", "test"))
    ]
    return _collect(computed)[1], replies


def test_the_split_hash_reads_the_md5_digests_bytes_9_to_16_little_endian_as_google_sql_rebuilds_them():
    keys = [f"11|c{i:03d}|p{i % 7:03d}|2025-01-0{i % 9 + 1} 0{i % 10}:26:0{i % 6}" for i in range(200)]
    found = duckdb.execute("SELECT k, md5_number_lower(k) FROM unnest(?) AS t(k)", [keys]).fetchall()
    for key, number in found:
        digest = hashlib.md5(key.encode()).digest()
        assert number == int.from_bytes(digest[8:16], "little")
        # What the GoogleSQL spelling computes: TO_HEX(REVERSE(SUBSTR(MD5(k), 9, 8))), two 32-bit halves.
        hexed = digest[8:16][::-1].hex()
        assert int(hexed[:8], 16) * 4294967296 + int(hexed[8:], 16) == number


def test_the_split_in_google_sql_keys_on_the_same_text_and_cuts_at_the_same_buckets(messy_source):
    spec = bigquery_spec(messy_source)
    relation = splits.split_relation(BIGQUERY, "SELECT 1", spec.split, "eval", True)
    key = "ARRAY_TO_STRING(['11', buyer_id, product_id, FORMAT_TIMESTAMP('%Y-%m-%d %H:%M:%E*S', `timestamp`, 'UTC')], '|')"
    assert f"TO_HEX(REVERSE(SUBSTR(MD5({key}), 9, 8)))" in relation
    assert "CASE WHEN MOD(__h, 1000000) < 800000 THEN 'train' WHEN MOD(__h, 1000000) < 900000 THEN 'eval'" in relation
    assert "WHERE MOD(DIV(__h, 1000000), 1000000) < 700000" in relation
    assert relation.endswith("SELECT * EXCEPT (__split) FROM split_rows WHERE __split = 'eval') AS examples")
    duck = splits.split_relation(DUCKDB, "SELECT 1", spec.split, "eval", True)
    assert "md5_number_lower(concat_ws('|', '11', buyer_id, product_id, CAST(\"timestamp\" AS VARCHAR)))" in duck


@pytest.mark.parametrize("split", [{}, {"strategy": "time_holdout", "holdout_days": 20}], ids=["random", "holdout"])
def test_the_shared_split_sql_keeps_exactly_the_rows_example_gen_put_in_each_split(tmp_path, messy_source, split):
    spec = local_spec(messy_source, **split)
    result = run_pipeline(spec.model_copy(update={"stages": ["ExampleGen"]}), tmp_path / "root")
    statement = duckdb_statement(messy_source, spec)
    for name in ("train", "eval", "test"):
        relation = splits.split_relation(DUCKDB, statement, spec.split, name, True)
        kept = sorted(duckdb.sql(f"SELECT * FROM {relation}").fetchall())
        written = sorted(
            tuple(r.values()) for r in pq.read_table(result.artifacts["ExampleGen"].path / name).to_pylist()
        )
        assert kept == written, name


def test_statistics_of_a_bigquery_source_are_computed_in_bigquery_and_describe_the_same_rows_per_split(
    tmp_path, messy_source, monkeypatch
):
    local = run_pipeline(local_spec(messy_source), tmp_path / "root")
    twin, replies = twin_statistics(messy_source, local_spec(messy_source))
    fake = FakeBigQuery(twin_sql=duckdb_statement(messy_source, local_spec(messy_source)), replies=replies)
    monkeypatch.setattr(bigquery, "make_client", lambda source: fake)
    monkeypatch.setenv(bigquery.EXPORT_URI_ENV, "memory://exports")

    pushed = run_pipeline(bigquery_spec(messy_source), tmp_path / "bq-root")

    assert pushed.status == "completed", pushed.error
    assert summary_of(pushed)["splits"] == twin["splits"]
    assert without_medians(summary_of(pushed)) == without_medians(summary_of(local))
    statistics_queries = [c.sql for c in fake.calls if not c.dry_run and c.sql.startswith("SELECT")]
    assert len(statistics_queries) == len(replies) and not fake.replies
    assert all("FROM `my-project.shop.orders`" in sql and '"' not in sql for sql in statistics_queries)
    assert "APPROX_QUANTILES(" in statistics_queries[0] and "WHERE __split = 'train'" in statistics_queries[0]


def test_statistics_refuse_a_bigquery_split_that_no_longer_matches_example_gens(tmp_path, messy_source, monkeypatch):
    twin, replies = twin_statistics(messy_source, local_spec(messy_source))
    replies[0] = [(replies[0][0][0] + 5, *replies[0][0][1:])]  # the table gained rows since the export
    fake = FakeBigQuery(twin_sql=duckdb_statement(messy_source, local_spec(messy_source)), replies=replies)
    monkeypatch.setattr(bigquery, "make_client", lambda source: fake)
    monkeypatch.setenv(bigquery.EXPORT_URI_ENV, "memory://exports")

    result = run_pipeline(bigquery_spec(messy_source), tmp_path / "bq-root")

    assert result.status == "failed"
    assert "BigQuery's split of the rows differs from ExampleGen's (train: " in result.error["message"]


def test_a_local_sources_statistics_key_is_what_it_was_before_pushdown(messy_source):
    params = StatisticsGen().params(local_spec(messy_source))
    assert params.model_dump(mode="json") == {"histogram_buckets": 10, "top_values": 20, "rank_histogram_values": 100}
    assert "pushdown" in StatisticsGen().params(bigquery_spec(messy_source)).model_dump(mode="json")
