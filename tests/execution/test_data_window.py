"""A relative window that ends at a given instant (``dataset.as_of``, a scheduled run's occurrence): "the last
N days" is (as_of - N days, as_of], for ExampleGen, the preview and BigQuery alike, and it is in ExampleGen's
cache key exactly when it changes the rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ml_pipeline.data.preview import preview
from ml_pipeline.data.query import BIGQUERY, RowsQuery
from ml_pipeline.errors import ConfigError, validate_model
from ml_pipeline.reporting import Reporter
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.spec import PipelineSpec
from tests.execution.test_data_stages import our_stages, purchases, run, spec_for, split_table, write

AS_OF = datetime(2025, 3, 1, 12, 0)


def windowed(path, as_of: str | None = "2025-03-01T12:00:00", last_days: int = 7, **changes) -> PipelineSpec:
    dataset = spec_for(path).dataset.model_dump(mode="json")
    dataset = {**dataset, "filters": {"last_days": last_days}, "as_of": as_of}
    return spec_for(path, dataset=dataset, split={"strategy": "random"}, stages=["ExampleGen"], **changes)


def in_window(table: pa.Table, start: datetime, end: datetime) -> int:
    when = table["ordered_at"]
    return pc.sum(pc.and_(pc.greater(when, pa.scalar(start, when.type)), pc.less_equal(when, end))).as_py()


@pytest.fixture
def source(tmp_path):
    return write(purchases(), tmp_path / "purchases.parquet")  # 2025-01-01 to 2025-04-30


def test_examplegen_keeps_the_n_days_up_to_as_of_and_nothing_after_it(tmp_path, source):
    result = run(windowed(source), tmp_path / "root")
    assert result.status == "completed", result.error
    written = pa.concat_tables(split_table(result, split) for split in ("train", "eval", "test"))
    expected = in_window(purchases(), AS_OF - timedelta(days=7), AS_OF)
    assert written.num_rows == expected > 0
    assert pc.max(written["timestamp"]).as_py() <= AS_OF < pc.max(purchases()["ordered_at"]).as_py()


def test_the_preview_counts_the_same_window(source):
    assert preview(windowed(source).dataset)["rows"] == in_window(purchases(), AS_OF - timedelta(days=7), AS_OF)


def test_as_of_is_kept_as_naive_utc(source):
    spec = windowed(source, as_of="2025-03-01T13:00:00+01:00")
    assert spec.dataset.as_of == AS_OF


def test_as_of_without_a_relative_window_or_a_time_holdout_is_refused_naming_it(source):
    data = windowed(source).model_dump(mode="json")
    data["dataset"]["filters"] = {}
    with pytest.raises(ConfigError) as refused:
        validate_model(PipelineSpec, data)
    assert [p.field for p in refused.value.problems] == ["dataset.as_of"]


def test_another_as_of_is_another_examplegen_cache_key_the_same_one_is_reused(tmp_path, source):
    assert run(windowed(source), tmp_path / "root").status == "completed"

    def plan(spec: PipelineSpec, run_id: str) -> str:
        return (
            PipelineRunner(spec, tmp_path / "root", run_id=run_id, reporter=Reporter(), stages=our_stages())
            .plan()[0]
            .action
        )

    assert plan(windowed(source), "same") == "reuse"
    assert plan(windowed(source, as_of="2025-03-02T12:00:00"), "next-day") == "run"


def test_bigquery_ends_the_window_at_as_of_too(source):
    dataset = windowed(source).dataset
    columns = {"customer": "VARCHAR", "item": "VARCHAR", "ordered_at": "TIMESTAMP", "qty": "BIGINT"}
    for name in ("segment", "city", "category"):
        columns[name] = "VARCHAR"
    columns.update({"pack_size": "BIGINT", "price": "DOUBLE"})
    statement = RowsQuery(BIGQUERY, columns, dataset.mapping, dataset.filters, as_of=dataset.as_of).statement("x")
    assert (
        "`timestamp` > TIMESTAMP_SUB(TIMESTAMP '2025-03-01 12:00:00', INTERVAL 7 DAY) "
        "AND `timestamp` <= TIMESTAMP '2025-03-01 12:00:00'"
    ) in statement


def holdout(path, as_of: str | None = "2025-03-01T12:00:00", days: int = 7) -> PipelineSpec:
    dataset = {**spec_for(path).dataset.model_dump(mode="json"), "as_of": as_of}
    split = {"strategy": "time_holdout", "holdout_days": days}
    return spec_for(path, dataset=dataset, split=split, stages=["ExampleGen"])


def newest_up_to(table: pa.Table, end: datetime) -> datetime:
    when = table["ordered_at"]
    return pc.max(pc.filter(when, pc.less_equal(when, pa.scalar(end, when.type)))).as_py()


def test_a_time_holdout_ends_at_the_newest_row_up_to_as_of_not_at_the_newest_row_of_the_file(tmp_path, source):
    result = run(holdout(source), tmp_path / "root")
    assert result.status == "completed", result.error
    train, evaluation = split_table(result, "train"), split_table(result, "eval")
    newest = newest_up_to(purchases(), AS_OF)
    assert evaluation.num_rows == in_window(purchases(), newest - timedelta(days=7), newest) > 0
    assert pc.max(evaluation["timestamp"]).as_py() == newest
    assert pc.max(train["timestamp"]).as_py() <= newest - timedelta(days=7)


def test_a_time_holdout_of_a_file_that_stopped_growing_before_as_of_keeps_its_eval_split(tmp_path, source):
    """A schedule over a file nobody appended to for months: the last 7 days of the data, not 7 empty days."""
    result = run(holdout(source, as_of="2025-09-01T00:00:00"), tmp_path / "root")
    assert result.status == "completed", result.error
    newest = newest_up_to(purchases(), datetime(2025, 9, 1))
    assert split_table(result, "eval").num_rows == in_window(purchases(), newest - timedelta(days=7), newest) > 0


def test_a_time_holdout_reads_no_row_after_as_of(tmp_path, source):
    result = run(holdout(source), tmp_path / "root")
    written = pa.concat_tables(split_table(result, split) for split in ("train", "eval", "test"))
    assert written.num_rows == in_window(purchases(), datetime(2000, 1, 1), AS_OF)


def test_a_time_holdouts_as_of_is_in_the_examplegen_cache_key(tmp_path, source):
    assert run(holdout(source), tmp_path / "root").status == "completed"

    def plan(spec: PipelineSpec, run_id: str) -> str:
        runner = PipelineRunner(spec, tmp_path / "root", run_id=run_id, reporter=Reporter(), stages=our_stages())
        return runner.plan()[0].action

    assert plan(holdout(source), "same") == "reuse"
    assert plan(holdout(source, as_of="2025-03-08T12:00:00"), "a-week-later") == "run"


def test_bigquery_pushdown_splits_a_time_holdout_at_the_newest_kept_row_too(source):
    from ml_pipeline.data.splits import split_relation

    spec = holdout(source)
    relation = split_relation(BIGQUERY, "SELECT 1", spec.split, "eval", True)
    assert "TIMESTAMP_SUB((SELECT max(`timestamp`) FROM kept_rows), INTERVAL 7 DAY)" in relation
