"""ExampleGen, StatisticsGen and SchemaGen: splits, catalog, statistics, schema and anomalies.

The data is generated here, deterministically: a few thousand purchases by
150 buyers of 80 products over 120 days, with a buyer segment and city, a
product category and pack size, a price that is sometimes missing and a
quantity that is sometimes zero. Expected numbers are computed independently
with numpy/pyarrow from the files the stages write or read.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from ml_pipeline.artifact_types import ExampleStatistics
from ml_pipeline.artifacts import Artifact
from ml_pipeline.data.preview import preview
from ml_pipeline.reporting import InMemoryReporter, Reporter
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.spec import PipelineSpec
from ml_pipeline.stages.base import StageContext
from ml_pipeline.stages.compile import Compile
from ml_pipeline.stages.example_gen import ExampleGen, source_fingerprint
from ml_pipeline.stages.schema_gen import SchemaGen
from ml_pipeline.stages.statistics_gen import StatisticsGen
from tests.helpers import purchases_dataset, with_changes

START = datetime(2025, 1, 1)
DAYS = 120
SEGMENTS = ["retail", "wholesale", "online"]
CITIES = [f"city_{i:02d}" for i in range(30)]  # more than the 20 top values the statistics keep
CATEGORIES = ["tools", "garden", "kitchen", "toys", "paint", "lighting"]
PACK_SIZES = [1, 6, 12, 24]
TRAIN_END = datetime(2025, 3, 1)
# The examples' columns, in order: the mapped roles, then the buyer's and the product's features.
MAPPED_COLUMNS = ["buyer_id", "product_id", "timestamp", "target", "segment", "city", "category", "pack_size", "price"]
EVAL_END = datetime(2025, 4, 1)
STRICT_TEMPORAL = {"strategy": "strict_temporal", "train_end": TRAIN_END.isoformat(), "eval_end": EVAL_END.isoformat()}


# -- data ------------------------------------------------------------------------
def purchases(n: int = 3000, seed: int = 7, drift_from: datetime | None = None) -> pa.Table:
    """Purchases; from ``drift_from`` on, 80% of rows say 'online' and 15% come from a new city."""
    rng = np.random.default_rng(seed)
    buyer = rng.integers(0, 150, n)
    product = rng.integers(0, 80, n)
    seconds = np.sort(rng.integers(0, DAYS * 86400, n))
    when = np.datetime64(START) + seconds.astype("timedelta64[s]")
    segment = np.array(SEGMENTS, dtype=object)[buyer % 3]
    city = np.array(CITIES, dtype=object)[(buyer * 7) % 30]
    category = np.array(CATEGORIES, dtype=object)[product % 6]
    category[(product == 0) & (seconds > 100 * 86400)] = "clearance"  # p000 was recategorised late
    price = np.round(rng.gamma(2.0, 10.0, n), 2)
    if drift_from is not None:
        late = when >= np.datetime64(drift_from)
        segment[late & (rng.random(n) < 0.8)] = "online"
        city[late & (rng.random(n) < 0.15)] = "Atlantis"
    return pa.table(
        {
            "customer": pa.array([f"c{b:03d}" for b in buyer]),
            "item": pa.array([f"p{p:03d}" for p in product]),
            "ordered_at": pa.array(when.astype("datetime64[s]"), pa.timestamp("s")),
            "qty": pa.array(rng.integers(0, 6, n)),
            "price": pa.array(price, mask=rng.random(n) < 0.05),
            "segment": pa.array(segment.tolist()),
            "city": pa.array(city.tolist()),
            "category": pa.array(category.tolist()),
            "pack_size": pa.array(np.array(PACK_SIZES)[product % 4]),
        }
    )


def with_rows(table: pa.Table, *rows: dict) -> pa.Table:
    extra = pa.Table.from_pylist([dict(r) for r in rows], schema=table.schema)
    return pa.concat_tables([table, extra])


def row(
    customer="c000",
    item="p001",
    at=START,
    qty=1,
    price=10.0,
    segment="retail",
    city="city_00",
    category="garden",
    pack_size=6,
) -> dict:
    return dict(
        customer=customer,
        item=item,
        ordered_at=at,
        qty=qty,
        price=price,
        segment=segment,
        city=city,
        category=category,
        pack_size=pack_size,
    )


def write(table: pa.Table, path: Path) -> Path:
    pq.write_table(table, path)
    return path


def spec_for(path: Path, **changes) -> PipelineSpec:
    spec = {
        "name": "data-stages",
        "dataset": purchases_dataset(
            path,
            buyer_features=[{"column": "segment"}, {"column": "city"}],
            product_features=[
                {"column": "category"},
                {"column": "pack_size", "dtype": "int"},
                {"column": "price", "dtype": "float"},
            ],
        ),
        "features": {
            "buyer_tower": {
                "features": [
                    {"kind": "id", "column": "buyer_id", "embedding_dim": 8},
                    {"kind": "categorical", "column": "segment", "embedding_dim": 4},
                ]
            },
            "product_tower": {
                "features": [
                    {"kind": "id", "column": "product_id", "embedding_dim": 8},
                    {"kind": "categorical", "column": "category", "embedding_dim": 4},
                ]
            },
        },
        "model": {"model_type": "retrieval"},
        "stages": ["ExampleGen", "StatisticsGen", "SchemaGen"],
    }
    return PipelineSpec.model_validate(with_changes(spec, **changes))


def our_stages() -> dict:
    return {"ExampleGen": ExampleGen(), "StatisticsGen": StatisticsGen(), "SchemaGen": SchemaGen()}


def run(spec: PipelineSpec, root: Path, run_id: str = "r1", only: tuple[str, ...] | None = None):
    if only:
        spec = spec.model_copy(update={"stages": list(only)})
    runner = PipelineRunner(spec, root, run_id=run_id, reporter=InMemoryReporter(), stages=our_stages())
    result = runner.run()
    return result


def split_table(result, split: str) -> pa.Table:
    return pq.read_table(result.artifacts["ExampleGen"].path / split)


def keys(table: pa.Table) -> list[tuple]:
    return sorted(zip(table["buyer_id"].to_pylist(), table["product_id"].to_pylist(), table["timestamp"].to_pylist()))


@pytest.fixture
def source(tmp_path) -> Path:
    return write(purchases(), tmp_path / "purchases.parquet")


# -- ExampleGen ------------------------------------------------------------------
def test_it_writes_each_split_as_parquet_of_the_mapped_rows_and_counts_them(tmp_path, source):
    result = run(spec_for(source), tmp_path / "root", only=("ExampleGen",))
    assert result.status == "completed", result.error
    examples = result.artifacts["ExampleGen"]
    tables = {split: split_table(result, split) for split in ("train", "eval", "test")}
    assert tables["train"].column_names == MAPPED_COLUMNS
    counts = {split: t.num_rows for split, t in tables.items()}
    everything = pa.concat_tables(tables.values())
    assert examples.properties == {
        "splits": counts,
        "rows": 3000,
        "products": len(set(everything["product_id"].to_pylist())),
        "buyers": len(set(everything["buyer_id"].to_pylist())),
    }
    assert examples.summary == (
        f"3,000 examples (train {counts['train']:,} · eval {counts['eval']:,} · test {counts['test']:,})"
    )
    assert all(name.endswith(".parquet") for name in examples.files)


def test_it_splits_randomly_by_ratio_the_same_way_every_time(tmp_path, source):
    spec = spec_for(source, split={"train_ratio": 0.7, "eval_ratio": 0.2, "test_ratio": 0.1})
    first = run(spec, tmp_path / "a")
    again = run(spec, tmp_path / "b")  # a separate root: computed again, not reused
    counts = first.artifacts["ExampleGen"].properties["splits"]
    assert abs(counts["train"] / 3000 - 0.7) < 0.04
    assert abs(counts["eval"] / 3000 - 0.2) < 0.04
    assert abs(counts["test"] / 3000 - 0.1) < 0.03
    for split in ("train", "eval", "test"):
        assert keys(split_table(first, split)) == keys(split_table(again, split))
    other_seed = run(
        spec_for(source, split={"train_ratio": 0.7, "eval_ratio": 0.2, "test_ratio": 0.1, "seed": 7}), tmp_path / "c"
    )
    assert keys(split_table(other_seed, "eval")) != keys(split_table(first, "eval"))


def test_it_keeps_all_of_a_buyers_rows_in_one_split_with_the_buyer_hash_key(tmp_path, source):
    def splits_per_buyer(result) -> dict[str, set]:
        found: dict[str, set] = {}
        for split in ("train", "eval", "test"):
            for buyer in split_table(result, split)["buyer_id"].to_pylist():
                found.setdefault(buyer, set()).add(split)
        return found

    by_buyer = splits_per_buyer(
        run(spec_for(source, split={"hash_key": "buyer"}), tmp_path / "a", only=("ExampleGen",))
    )
    assert len(by_buyer) == 150 and all(len(splits) == 1 for splits in by_buyer.values())
    assert sum(1 for s in by_buyer.values() if s == {"eval"}) > 5  # eval buyers exist: cold-start evaluation
    by_row = splits_per_buyer(run(spec_for(source), tmp_path / "b", only=("ExampleGen",)))
    assert sum(1 for splits in by_row.values() if len(splits) > 1) > 100


def test_it_samples_by_hash_so_smaller_samples_are_subsets_with_the_same_splits(tmp_path, source):
    full = run(spec_for(source), tmp_path / "full", only=("ExampleGen",))
    half = run(spec_for(source, split={"sample_percent": 50}), tmp_path / "half", only=("ExampleGen",))
    quarter = run(spec_for(source, split={"sample_percent": 25}), tmp_path / "quarter", only=("ExampleGen",))
    assert abs(half.artifacts["ExampleGen"].properties["rows"] / 3000 - 0.5) < 0.05
    assert abs(quarter.artifacts["ExampleGen"].properties["rows"] / 3000 - 0.25) < 0.05
    for split in ("train", "eval", "test"):
        in_full, in_half = set(keys(split_table(full, split))), set(keys(split_table(half, split)))
        assert set(keys(split_table(quarter, split))) <= in_half <= in_full


def test_it_holds_out_the_last_days_before_the_newest_row_as_eval(tmp_path):
    table = purchases()
    newest = max(table["ordered_at"].to_pylist())
    boundary = newest - timedelta(days=14)
    table = with_rows(
        table, row(customer="c_edge", at=boundary), row(customer="c_after", at=boundary + timedelta(seconds=1))
    )
    result = run(
        spec_for(write(table, tmp_path / "p.parquet"), split={"strategy": "time_holdout", "holdout_days": 14}),
        tmp_path / "root",
        only=("ExampleGen",),
    )
    train, evaluation, test = (split_table(result, s) for s in ("train", "eval", "test"))
    assert all(t > boundary for t in evaluation["timestamp"].to_pylist())
    assert all(t <= boundary for t in train["timestamp"].to_pylist())
    expected_eval = sum(1 for t in table["ordered_at"].to_pylist() if t > boundary)
    assert evaluation.num_rows == expected_eval
    assert "c_edge" in train["buyer_id"].to_pylist() and "c_after" in evaluation["buyer_id"].to_pylist()
    assert test.num_rows == 0 and test.column_names == train.column_names  # an empty test split, same schema
    assert result.artifacts["ExampleGen"].summary == (
        f"{table.num_rows:,} examples (train {train.num_rows:,} · eval {evaluation.num_rows:,})"
    )


def test_it_splits_strictly_by_time_with_each_boundary_starting_the_next_split(tmp_path):
    table = with_rows(
        purchases(),
        row(customer="c_train_end", at=TRAIN_END),
        row(customer="c_eval_end", at=EVAL_END),
        row(customer="c_before", at=TRAIN_END - timedelta(seconds=1)),
    )
    spec = spec_for(write(table, tmp_path / "p.parquet"), split=STRICT_TEMPORAL)
    result = run(spec, tmp_path / "root", only=("ExampleGen",))
    when = table["ordered_at"].to_pylist()
    expected = {
        "train": sum(t < TRAIN_END for t in when),
        "eval": sum(TRAIN_END <= t < EVAL_END for t in when),
        "test": sum(t >= EVAL_END for t in when),
    }
    assert result.artifacts["ExampleGen"].properties["splits"] == expected
    buyers = {s: set(split_table(result, s)["buyer_id"].to_pylist()) for s in ("train", "eval", "test")}
    assert "c_before" in buyers["train"] and "c_train_end" in buyers["eval"] and "c_eval_end" in buyers["test"]
    assert max(split_table(result, "train")["timestamp"].to_pylist()) < TRAIN_END
    assert min(split_table(result, "test")["timestamp"].to_pylist()) >= EVAL_END


def test_it_writes_a_catalog_of_every_product_with_its_latest_features_and_train_count(tmp_path):
    table = with_rows(
        purchases(),
        row(item="p_late", at=EVAL_END + timedelta(days=3), category="toys", pack_size=12),
        row(item="p_late", at=EVAL_END + timedelta(days=4), category="paint", pack_size=24),
    )
    spec = spec_for(write(table, tmp_path / "p.parquet"), split=STRICT_TEMPORAL)
    result = run(spec, tmp_path / "root", only=("ExampleGen",))
    catalog = pq.read_table(result.artifacts["ExampleGen"].path / "catalog.parquet")
    assert catalog.column_names == ["product_id", "category", "pack_size", "price", "train_count"]
    by_product = {r["product_id"]: r for r in catalog.to_pylist()}
    assert list(by_product) == sorted(by_product)
    assert len(by_product) == 81 == result.artifacts["ExampleGen"].properties["products"]

    train = split_table(result, "train")
    train_counts = dict(
        zip(
            *[
                c.to_pylist()
                for c in train.group_by("product_id")
                .aggregate([("product_id", "count")])
                .select(["product_id", "product_id_count"])
                .columns
            ]
        )
    )
    for product, entry in by_product.items():
        assert entry["train_count"] == train_counts.get(product, 0)
    assert by_product["p_late"]["train_count"] == 0
    assert by_product["p_late"]["category"] == "paint" and by_product["p_late"]["pack_size"] == 24
    # The latest row decides the product's features (p000 was recategorised after day 100).
    assert by_product["p000"]["category"] == "clearance"
    p005 = table.filter(pc.equal(table["item"], "p005"))
    latest = p005.take([int(np.argmax(p005["ordered_at"].to_numpy()))]).to_pylist()[0]
    assert by_product["p005"]["category"] == latest["category"]


def test_it_drops_rows_without_ids_by_the_rule_the_preview_counts_them_with(tmp_path):
    missing = [row(customer=value) for value in ("NA", "N/A", "null", "", "   ")] + [row(item="nan")]
    table = with_rows(purchases(), *missing, row(customer="17850.0"), row(customer="\u00a017851\t"))
    spec = spec_for(write(table, tmp_path / "messy.parquet"))
    result = run(spec, tmp_path / "root", only=("ExampleGen",))
    assert result.status == "completed", result.error
    written = pa.concat_tables(split_table(result, split) for split in ("train", "eval", "test"))
    shown = preview(spec.dataset)
    assert written.num_rows == shown["rows"] == 3002
    assert [(d["reason"], d["rows"]) for d in shown["dropped"]] == [("no_buyer_id", 5), ("no_product_id", 1)]
    assert {"17850", "17851"} <= set(written["buyer_id"].to_pylist())
    assert not {"NA", "N/A", "null", "", "17850.0"} & set(written["buyer_id"].to_pylist())


def test_it_fails_naming_dataset_filters_when_no_rows_are_left(tmp_path, source):
    spec = spec_for(
        source,
        dataset={
            **spec_for(source).dataset.model_dump(mode="json"),
            "filters": {"conditions": [{"column": "segment", "op": "eq", "value": "nobody"}]},
        },
    )
    result = run(spec, tmp_path / "root", only=("ExampleGen",))
    assert result.status == "failed"
    assert result.error["message"].startswith("dataset.filters: no rows left after filters (3,000 source rows")
    stage_dir = tmp_path / "root" / "data-stages" / "runs" / "r1" / "ExampleGen"
    assert not (stage_dir / "manifest.json").exists() and not (stage_dir / "output").exists()


@pytest.mark.parametrize(
    "split, message",
    [
        (
            {"strategy": "strict_temporal", "train_end": "2025-06-01T00:00:00", "eval_end": "2025-07-01T00:00:00"},
            "split.eval_end: the eval split is empty: no rows from 2025-06-01 00:00:00 to before 2025-07-01 00:00:00",
        ),
        (
            {"strategy": "strict_temporal", "train_end": "2024-06-01T00:00:00", "eval_end": "2024-07-01T00:00:00"},
            "split.train_end: the train split is empty: no rows before 2024-06-01 00:00:00",
        ),
        (
            {"strategy": "time_holdout", "holdout_days": 365},
            "split.holdout_days: the train split is empty: every row is in the last 365 days",
        ),
    ],
)
def test_it_fails_naming_the_split_setting_when_train_or_eval_is_empty(tmp_path, source, split, message):
    result = run(spec_for(source, split=split), tmp_path / "root")
    assert result.status == "failed" and result.error["stage"] == "ExampleGen"
    assert result.error["message"].startswith(message)
    assert not (tmp_path / "root" / "data-stages" / "runs" / "r1" / "ExampleGen" / "manifest.json").exists()
    assert set(result.artifacts) == set()  # nothing downstream ran


def test_it_fingerprints_the_source_by_content(tmp_path):
    table = purchases()
    path = write(table, tmp_path / "p.parquet")
    spec = spec_for(path)
    first = source_fingerprint(spec.dataset, None)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # touched, not changed
    assert source_fingerprint(spec.dataset, None) == first
    write(with_rows(table, row()), path)
    assert source_fingerprint(spec.dataset, None) != first

    folder = tmp_path / "parts"
    folder.mkdir()
    write(table, folder / "a.parquet")
    folder_spec = spec_for(folder)
    before = source_fingerprint(folder_spec.dataset, None)
    write(table.slice(0, 10), folder / "b.parquet")
    assert source_fingerprint(folder_spec.dataset, None) != before


def test_it_reuses_its_output_until_the_source_changes(tmp_path):
    table = purchases()
    path = write(table, tmp_path / "p.parquet")
    spec = spec_for(path, stages=["ExampleGen"])
    assert run(spec, tmp_path / "root").status == "completed"
    runner = PipelineRunner(spec, tmp_path / "root", run_id="r2", reporter=Reporter(), stages=our_stages())
    assert runner.plan()[0].action == "reuse"
    write(with_rows(table, row()), path)
    runner = PipelineRunner(spec, tmp_path / "root", run_id="r3", reporter=Reporter(), stages=our_stages())
    assert runner.plan()[0].action == "run"


def test_it_reads_and_fingerprints_a_sql_source(tmp_path):
    database = str(tmp_path / "shop.duckdb")
    with duckdb.connect(database) as con:
        con.from_arrow(purchases(n=500)).create("orders")
    spec = spec_for(
        tmp_path,
        dataset={
            **spec_for(tmp_path).dataset.model_dump(mode="json"),
            "source": {"kind": "sql", "engine": "duckdb", "database": database, "query": "SELECT * FROM orders"},
        },
    )
    first = source_fingerprint(spec.dataset, None)
    assert source_fingerprint(spec.dataset, None) == first
    result = run(spec, tmp_path / "root", only=("ExampleGen",))
    assert result.artifacts["ExampleGen"].properties["rows"] == 500
    with duckdb.connect(database) as con:
        con.execute("UPDATE orders SET qty = qty + 1 WHERE item = 'p001'")
    assert source_fingerprint(spec.dataset, None) != first


def test_it_leaves_a_missing_source_to_fail_the_run_with_the_path_named(tmp_path):
    spec = spec_for(tmp_path / "nowhere.parquet")
    assert source_fingerprint(spec.dataset, None) != source_fingerprint(spec.dataset, None)  # never reused
    result = run(spec, tmp_path / "root")
    assert result.status == "failed"
    assert result.error["message"].startswith("dataset.source.path: ") and "does not exist" in result.error["message"]


def test_a_bigquery_source_fails_at_compile_locally_and_is_never_cached(tmp_path, source):
    spec = spec_for(
        source,
        dataset={
            **spec_for(source).dataset.model_dump(mode="json"),
            "source": {"kind": "bigquery", "project": "my-project", "table": "shop.orders"},
        },
    )
    assert source_fingerprint(spec.dataset, None) != source_fingerprint(spec.dataset, None)
    spec = spec.model_copy(update={"stages": ["Compile", "ExampleGen"]})
    result = PipelineRunner(spec, tmp_path / "root", stages={"Compile": Compile(), "ExampleGen": ExampleGen()}).run()
    assert result.status == "failed" and result.error["stage"] == "Compile"
    assert "dataset.source.kind: BigQuery sources run on the Vertex AI runner" in result.error["message"]


# -- StatisticsGen ---------------------------------------------------------------
def feature_stats(dataset, name: str):
    return next(f for f in dataset.features if list(f.path.step) == [name])


def test_it_computes_split_statistics_that_match_an_independent_computation(tmp_path, source):
    result = run(spec_for(source), tmp_path / "root", only=("ExampleGen", "StatisticsGen"))
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.ParseFromString((result.artifacts["StatisticsGen"].path / "stats.pb").read_bytes())
    assert [d.name for d in stats.datasets] == ["train", "eval", "test"]
    train = split_table(result, "train")
    dataset = stats.datasets[0]
    assert dataset.num_examples == train.num_rows

    price = train["price"].to_numpy(zero_copy_only=False)
    present = price[~np.isnan(price)]
    num = feature_stats(dataset, "price").num_stats
    assert num.common_stats.num_missing == np.isnan(price).sum() > 0
    assert num.common_stats.num_non_missing == len(present)
    assert num.mean == pytest.approx(present.mean())
    assert num.std_dev == pytest.approx(present.std())
    assert (num.min, num.max) == (present.min(), present.max())
    assert abs(num.median - np.median(present)) < 0.05 * (present.max() - present.min())
    standard, quantiles = num.histograms
    assert standard.type == statistics_pb2.Histogram.STANDARD and len(standard.buckets) == 10
    assert quantiles.type == statistics_pb2.Histogram.QUANTILES and len(quantiles.buckets) == 10
    assert sum(b.sample_count for b in standard.buckets) == len(present)
    width = (present.max() - present.min()) / 10
    assert standard.buckets[0].sample_count == np.sum(present < present.min() + width)

    qty = train["target"].to_numpy()
    target = feature_stats(dataset, "target")
    assert target.type == statistics_pb2.FeatureNameStatistics.FLOAT
    assert target.num_stats.num_zeros == np.sum(qty == 0) > 0

    pack = feature_stats(dataset, "pack_size")
    assert pack.type == statistics_pb2.FeatureNameStatistics.INT
    assert (pack.num_stats.min, pack.num_stats.max) == (1, 24)
    when = feature_stats(dataset, "timestamp")
    assert when.type == statistics_pb2.FeatureNameStatistics.INT
    assert when.num_stats.min == min(t.timestamp() for t in pc.assume_timezone(train["timestamp"], "UTC").to_pylist())

    cities = train["city"].to_pylist()
    city = feature_stats(dataset, "city")
    assert city.type == statistics_pb2.FeatureNameStatistics.STRING
    assert city.string_stats.unique == len(set(cities)) == 30
    counts = {c: cities.count(c) for c in set(cities)}
    top = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))  # ties: the smaller value first
    assert (city.string_stats.top_values[0].value, city.string_stats.top_values[0].frequency) == (top[0], top[1])
    assert len(city.string_stats.top_values) == 20
    assert [b.sample_count for b in city.string_stats.rank_histogram.buckets] == sorted(counts.values(), reverse=True)
    assert city.string_stats.avg_length == pytest.approx(np.mean([len(c) for c in cities]))
    assert result.artifacts["StatisticsGen"].summary == "statistics for 9 features × 3 splits"


def test_it_writes_a_compact_summary_for_the_ui(tmp_path, source):
    result = run(spec_for(source), tmp_path / "root", only=("ExampleGen", "StatisticsGen"))
    summary = json.loads((result.artifacts["StatisticsGen"].path / "summary.json").read_text())
    stats = ExampleStatistics.of(result.artifacts["StatisticsGen"]).load()
    evaluation = split_table(result, "eval")
    assert summary["features"] == evaluation.column_names
    columns = summary["splits"]["eval"]["columns"]
    assert summary["splits"]["eval"]["num_examples"] == evaluation.num_rows
    price = evaluation["price"].to_numpy(zero_copy_only=False)
    assert columns["price"]["type"] == "float"
    assert columns["price"]["missing"] == np.isnan(price).sum()
    assert columns["price"]["missing_pct"] == pytest.approx(100 * np.isnan(price).mean(), abs=1e-3)
    assert columns["price"]["mean"] == pytest.approx(np.nanmean(price))
    assert set(columns["price"]) >= {"count", "std", "min", "median", "max", "zeros"}
    segment = feature_stats(stats.datasets[1], "segment").string_stats
    assert columns["segment"]["unique"] == 3
    assert columns["segment"]["top"][0] == {
        "value": segment.top_values[0].value,
        "count": int(segment.top_values[0].frequency),
    }
    assert len(columns["city"]["top"]) == 5
    assert columns["timestamp"]["type"] == "timestamp"
    assert columns["timestamp"]["min"] == min(evaluation["timestamp"].to_pylist()).isoformat(sep=" ")


# -- SchemaGen -------------------------------------------------------------------
def load_schema(result) -> schema_pb2.Schema:
    return text_format.Parse((result.artifacts["SchemaGen"].path / "schema.pbtxt").read_text(), schema_pb2.Schema())


def anomalies_of(result_or_path) -> list[dict]:
    path = result_or_path if isinstance(result_or_path, Path) else result_or_path.artifacts["SchemaGen"].path
    return json.loads((path / "anomalies.json").read_text())


def test_it_infers_types_presence_domains_and_ranges_from_train(tmp_path, source):
    result = run(spec_for(source), tmp_path / "root")
    assert result.status == "completed", result.error
    schema = load_schema(result)
    features = {f.name: f for f in schema.feature}
    assert list(features) == MAPPED_COLUMNS
    assert {n: schema_pb2.FeatureType.Name(f.type) for n, f in features.items()} == {
        "buyer_id": "BYTES",
        "product_id": "BYTES",
        "timestamp": "INT",
        "target": "FLOAT",
        "segment": "BYTES",
        "city": "BYTES",
        "category": "BYTES",
        "pack_size": "INT",
        "price": "FLOAT",
    }
    train = split_table(result, "train")
    assert features["segment"].presence.min_fraction == 1.0 and features["segment"].presence.min_count == 1
    assert features["price"].presence.min_fraction == pytest.approx(1 - train["price"].null_count / train.num_rows)
    domains = {d.name: list(d.value) for d in schema.string_domain}
    assert set(domains) == {"segment", "city", "category"}  # ids never get a domain
    assert domains["city"] == sorted(set(train["city"].to_pylist()))  # all 30, not the top 20
    assert features["city"].domain == "city"
    assert features["city"].drift_comparator.infinity_norm.threshold == 0.3
    assert (features["pack_size"].int_domain.min, features["pack_size"].int_domain.max) == (1, 24)
    price = train["price"].to_numpy(zero_copy_only=False)
    assert features["price"].float_domain.max == pytest.approx(np.nanmax(price))  # a float32 field
    assert features["timestamp"].time_domain.integer_format == schema_pb2.TimeDomain.UNIX_SECONDS


def test_it_reports_no_anomalies_for_a_random_split_of_stable_data(tmp_path, source):
    result = run(spec_for(source), tmp_path / "root")
    assert [a for a in anomalies_of(result) if a["severity"] != "info"] == []
    assert result.artifacts["SchemaGen"].summary.startswith("schema for 9 features; no anomalies")
    assert result.artifacts["SchemaGen"].properties["errors"] == 0


def drifting_spec(tmp_path, **changes) -> PipelineSpec:
    path = write(purchases(drift_from=TRAIN_END), tmp_path / "drifting.parquet")
    return spec_for(path, split=STRICT_TEMPORAL, **changes)


def test_it_detects_planted_drift_and_unseen_categories_in_eval(tmp_path):
    result = run(drifting_spec(tmp_path), tmp_path / "root")
    assert result.status == "completed", result.error
    found = {(a["feature"], a["kind"]): a for a in anomalies_of(result)}
    drift = found[("segment", "drift")]
    assert drift["severity"] == "error" and "'online'" in drift["description"]
    unseen = found[("city", "unseen_categories")]
    assert unseen["severity"] == "error" and "'Atlantis'" in unseen["description"]
    assert not any(feature in ("buyer_id", "product_id") for feature, _ in found)  # new ids are not anomalies
    summary = result.artifacts["SchemaGen"].summary
    assert summary.startswith("schema for 9 features; 2 anomalies (")
    assert "drift in segment" in summary and "unseen categories in city" in summary

    proto = text_format.Parse(
        (result.artifacts["SchemaGen"].path / "anomalies.pbtxt").read_text(), anomalies_pb2.Anomalies()
    )
    assert set(proto.anomaly_info) == {"segment", "city"}
    assert proto.anomaly_info["segment"].severity == anomalies_pb2.AnomalyInfo.ERROR
    assert proto.anomaly_info["segment"].reason[0].type == anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH
    assert proto.drift_skew_info[0].drift_measurements[0].value > 0.3


def test_it_fails_on_error_anomalies_when_the_policy_says_so(tmp_path):
    result = run(drifting_spec(tmp_path, schema_policy={"fail_on_anomalies": True}), tmp_path / "root")
    assert result.status == "failed" and result.error["stage"] == "SchemaGen"
    assert result.error["message"].startswith("schema_policy.fail_on_anomalies: 2 anomalies with severity error: ")
    assert "segment: the distribution of 'segment' drifted" in result.error["message"]
    assert set(result.artifacts) == {"ExampleGen", "StatisticsGen"}
    stage_dir = tmp_path / "root" / "data-stages" / "runs" / "r1" / "SchemaGen"
    assert not (stage_dir / "manifest.json").exists() and not (stage_dir / "output").exists()


def test_it_lets_a_looser_policy_accept_the_same_data(tmp_path):
    result = run(
        drifting_spec(
            tmp_path, schema_policy={"fail_on_anomalies": True, "drift_l_infinity": 0.6, "unseen_category_share": 0.2}
        ),
        tmp_path / "root",
    )
    assert result.status == "completed", result.error
    anomalies = anomalies_of(result)
    assert [a for a in anomalies if a["severity"] != "info"] == []
    assert ("city", "unseen_categories") in {(a["feature"], a["kind"]) for a in anomalies}  # reported, as a note


def run_directly(stage, spec: PipelineSpec, root: Path, inputs: dict[str, Path]) -> Path:
    """Run one stage outside the runner, on input folders laid out like artifacts (``<uri>/output``)."""
    output = root / stage.name / "output"
    output.mkdir(parents=True)
    artifacts = {
        name: stage.inputs[name].of(Artifact(stage=name, type="", uri=str(uri), fingerprint="", run_id="manual"))
        for name, uri in inputs.items()
    }
    ctx = StageContext(
        "manual", output, output, root / stage.name / "work", artifacts, Reporter(), logging.getLogger("test")
    )
    stage.run(ctx, stage.params(spec))
    return output


def test_it_reports_a_column_missing_from_eval_and_a_changed_type(tmp_path, source):
    examples = tmp_path / "examples"
    table = purchases().rename_columns(
        ["buyer_id", "product_id", "timestamp", "target", "price", "segment", "city", "category", "pack_size"]
    )
    for split, part in (("train", table.slice(0, 2000)), ("eval", table.slice(2000))):
        (examples / "output" / split).mkdir(parents=True)
        if split == "eval":
            part = part.drop_columns(["segment"])
            part = part.set_column(
                part.column_names.index("pack_size"), "pack_size", pc.cast(part["pack_size"], pa.string())
            )
        write(part, examples / "output" / split / "part-0.parquet")
    spec = spec_for(source)
    statistics = run_directly(StatisticsGen(), spec, tmp_path, {"ExampleGen": examples})
    schema_out = run_directly(SchemaGen(), spec, tmp_path, {"ExampleGen": examples, "StatisticsGen": statistics.parent})
    found = {(a["feature"], a["kind"]): a for a in anomalies_of(schema_out)}
    assert found[("segment", "missing_column")]["severity"] == "error"
    change = found[("pack_size", "type_change")]
    assert change["severity"] == "error" and "BYTES in eval but INT in the schema" in change["description"]
