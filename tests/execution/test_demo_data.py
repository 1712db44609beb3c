"""Demo data: a deterministic B2B purchase log whose planted structure a recommender can find.

The structure checks use only the generated rows (never the generator's
hidden taste vectors), the way a model would see them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tracemalloc
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml_pipeline import demo_data
from ml_pipeline.demo_data import COLUMNS, DemoSpec, iter_batches, write

K = 50
SPEC = DemoSpec(rows=40_000, seed=3)


def generate(spec: DemoSpec, batch_rows: int = 250_000) -> pa.Table:
    return pa.Table.from_batches(list(iter_batches(spec, batch_rows)))


@pytest.fixture(scope="module")
def log() -> duckdb.DuckDBPyConnection:
    """The log of SPEC as a DuckDB table ``log``, plus a ``holdout`` flag on the last 20% of days."""
    table = generate(SPEC)
    con = duckdb.connect()
    con.register("generated", table)
    cutoff = datetime.combine(SPEC.start, datetime.min.time()) + timedelta(days=int(SPEC.days * 0.8))
    con.execute(
        "CREATE TABLE log AS SELECT *, timestamp >= ? AS holdout FROM generated",
        [cutoff],
    )
    return con


def rows_of(con, sql: str, params=()) -> list[tuple]:
    return con.execute(sql, list(params)).fetchall()


# --------------------------------------------------------------------------- determinism


def test_it_gives_identical_rows_for_the_same_spec_whatever_the_batch_size():
    spec = DemoSpec(rows=70_000, seed=11)  # more than one of the generator's internal blocks
    first = generate(spec)
    assert first.equals(generate(spec))
    assert first.equals(generate(spec, batch_rows=7_777))
    assert [b.num_rows for b in iter_batches(spec, batch_rows=30_000)] == [30_000, 30_000, 10_000]


def test_it_gives_different_rows_for_a_different_seed():
    assert not generate(DemoSpec(rows=5_000, seed=1)).equals(generate(DemoSpec(rows=5_000, seed=2)))


# --------------------------------------------------------------------------- schema and sizes


def test_it_has_the_documented_columns_types_and_exact_row_count():
    table = generate(DemoSpec(rows=3_210, seed=5))
    assert table.column_names == list(COLUMNS)
    assert table.schema == demo_data.SCHEMA
    assert dict(zip(table.column_names, map(str, table.schema.types))) == {
        "buyer_id": "string",
        "product_id": "string",
        "timestamp": "timestamp[us]",
        "quantity": "double",
        "price": "double",
        "buyer_segment": "string",
        "buyer_city": "string",
        "product_category": "string",
        "product_subcategory": "string",
    }
    assert table.num_rows == 3_210
    assert all(table.column(name).null_count == 0 for name in COLUMNS)


def test_it_formats_ids_and_keeps_values_in_range(log):
    assert rows_of(log, "SELECT count(*) FROM log WHERE NOT regexp_full_match(buyer_id, 'B\\d{6}')") == [(0,)]
    assert rows_of(log, "SELECT count(*) FROM log WHERE NOT regexp_full_match(product_id, 'P\\d{6}')") == [(0,)]
    ((low_q, low_price, first, last),) = rows_of(
        log, "SELECT min(quantity), min(price), min(timestamp), max(timestamp) FROM log"
    )
    assert low_q > 0 and low_price > 0
    assert first >= datetime.combine(SPEC.start, datetime.min.time())
    assert last < datetime.combine(SPEC.start + timedelta(days=SPEC.days), datetime.min.time())
    segments = {s for (s,) in rows_of(log, "SELECT DISTINCT buyer_segment FROM log")}
    assert segments == {"wholesale", "retail", "horeca", "office", "education"}
    assert {c for (c,) in rows_of(log, "SELECT DISTINCT buyer_city FROM log")} <= {c[0] for c in demo_data.CITIES}


def test_it_comes_out_in_timestamp_order():
    timestamps = generate(DemoSpec(rows=70_000, seed=2), batch_rows=9_999).column("timestamp").to_numpy()
    assert (np.diff(timestamps).astype(np.int64) >= 0).all()  # also across the generator's internal blocks


def test_it_keeps_attributes_consistent(log):
    """A subcategory belongs to one category; a buyer has one segment and city; a product one subcategory."""

    def most_values(attribute: str, per: str) -> int:
        return rows_of(log, f"SELECT max(n) FROM (SELECT count(DISTINCT {attribute}) n FROM log GROUP BY {per})")[0][0]

    assert most_values("product_category", per="product_subcategory") == 1
    assert most_values("product_subcategory", per="product_id") == 1
    assert most_values("(buyer_segment, buyer_city)", per="buyer_id") == 1


def test_it_scales_buyers_and_products_with_rows_unless_given():
    assert (DemoSpec(rows=100_000).n_buyers, DemoSpec(rows=100_000).n_products) == (4_000, 1_667)
    assert (DemoSpec(rows=1_000).n_buyers, DemoSpec(rows=1_000).n_products) == (200, 100)
    assert DemoSpec(rows=10_000_000).n_products == 166_667
    given = DemoSpec(rows=5_000, buyers=50, products=300)
    assert (given.n_buyers, given.n_products) == (50, 300)
    table = generate(given)
    assert len(set(table.column("buyer_id").to_pylist())) <= 50
    assert len(set(table.column("product_id").to_pylist())) <= 300


# --------------------------------------------------------------------------- planted structure


def recall_at_k(recommend, truth: dict[str, set[str]]) -> float:
    """Mean over buyers of the share of their holdout products found in their top K."""
    return float(
        np.mean([len(set(recommend(buyer)[:K]) & products) / len(products) for buyer, products in truth.items()])
    )


@pytest.fixture(scope="module")
def recalls(log) -> dict[str, float]:
    """Recall@50 on the holdout days for buyers seen in training, of three oracle-free recommenders."""
    popular = [
        p
        for (p,) in rows_of(
            log, "SELECT product_id FROM log WHERE NOT holdout GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT ?", [K]
        )
    ]
    by_segment = defaultdict(list)
    for segment, product in rows_of(
        log,
        """
            SELECT buyer_segment, product_id FROM log WHERE NOT holdout
            GROUP BY 1, 2 QUALIFY row_number() OVER (PARTITION BY buyer_segment ORDER BY count(*) DESC, product_id) <= ?
            ORDER BY 1, count(*) DESC, 2""",
        [K],
    ):
        by_segment[segment].append(product)
    by_subcategory = defaultdict(list)
    for subcategory, product in rows_of(
        log,
        """
            SELECT product_subcategory, product_id FROM log WHERE NOT holdout
            GROUP BY 1, 2 ORDER BY 1, count(*) DESC, 2""",
    ):
        by_subcategory[subcategory].append(product)
    history = defaultdict(Counter)
    subcategories = defaultdict(Counter)
    segment_of = {}
    for buyer, segment, product, subcategory, n in rows_of(
        log,
        """
            SELECT buyer_id, buyer_segment, product_id, product_subcategory, count(*) FROM log WHERE NOT holdout
            GROUP BY ALL""",
    ):
        history[buyer][product] += n
        subcategories[buyer][subcategory] += n
        segment_of[buyer] = segment
    truth = defaultdict(set)
    for buyer, product in rows_of(log, "SELECT DISTINCT buyer_id, product_id FROM log WHERE holdout"):
        if buyer in history:
            truth[buyer].add(product)

    def own_history_then_subcategories(buyer):
        """The buyer's own purchases (most bought first), then best sellers of its subcategories, then best sellers."""
        ranked = [p for p, _ in sorted(history[buyer].items(), key=lambda item: (-item[1], item[0]))]
        for subcategory, _ in subcategories[buyer].most_common():
            ranked += by_subcategory[subcategory][:10]
        return list(dict.fromkeys(ranked + popular))

    assert len(truth) > 300
    return {
        "popularity": recall_at_k(lambda buyer: popular, truth),
        "segment popularity": recall_at_k(lambda buyer: by_segment[segment_of[buyer]], truth),
        "own history": recall_at_k(own_history_then_subcategories, truth),
    }


def test_it_rewards_a_buyers_own_history_well_above_global_popularity(recalls):
    assert 0.1 < recalls["popularity"] < 0.6, "the popularity baseline should be a real competitor"
    assert recalls["own history"] >= 1.3 * recalls["popularity"], recalls


def test_it_rewards_individual_taste_beyond_the_segment(recalls):
    assert recalls["segment popularity"] > recalls["popularity"], recalls
    assert recalls["own history"] >= 1.2 * recalls["segment popularity"], recalls


def test_it_concentrates_each_segment_on_its_categories(log):
    """Lift = share of the category in the segment's lines / its share in all lines."""
    lift = {
        (segment, category): value
        for segment, category, value in rows_of(
            log,
            """
            SELECT buyer_segment, product_category,
                   (count(*) / sum(count(*)) OVER (PARTITION BY buyer_segment))
                   / (sum(count(*)) OVER (PARTITION BY product_category) / sum(count(*)) OVER ())
            FROM log GROUP BY 1, 2""",
        )
    }
    # Retail shares food and beverages with horeca and wholesale, so it has no category of its own.
    distinctive = {"horeca": "Kitchen", "office": "Office supplies", "education": "Education", "wholesale": "Packaging"}
    for segment, category in distinctive.items():
        assert lift[segment, category] >= 1.5, (segment, category, lift[segment, category])
    for segment in {s.name for s in demo_data.SEGMENTS}:  # and every segment mostly ignores some category
        assert min(v for (s, _), v in lift.items() if s == segment) < 0.5, segment


def test_it_sells_more_on_weekdays_than_at_weekends(log):
    ((weekday, weekend),) = rows_of(
        log,
        """
        SELECT count(*) FILTER (WHERE isodow(timestamp) <= 5) / 5, count(*) FILTER (WHERE isodow(timestamp) > 5) / 2
        FROM log""",
    )
    assert weekday > 2 * weekend


def test_it_gives_categories_their_own_seasons(log):
    """Education peaks around the school year's start; its share of lines is higher in Jul-Sep than in Jan-Mar."""
    ((summer, winter),) = rows_of(
        log,
        """
        SELECT avg((product_category = 'Education')::INT) FILTER (WHERE month(timestamp) BETWEEN 7 AND 9),
               avg((product_category = 'Education')::INT) FILTER (WHERE month(timestamp) BETWEEN 1 AND 3)
        FROM log""",
    )
    assert summer > 1.5 * winter


def test_it_groups_lines_into_orders_sharing_a_timestamp(log):
    ((lines_per_order,),) = rows_of(log, "SELECT avg(n) FROM (SELECT count(*) n FROM log GROUP BY buyer_id, timestamp)")
    assert 2 < lines_per_order < 8


def test_it_makes_quantity_grow_with_habit_and_segment(log):
    """Products a buyer keeps reordering are bought in larger quantities (within its segment); wholesale buys most."""
    pairs = np.array(
        rows_of(
            log,
            """
        SELECT ln(count(*)), avg(ln(quantity)) - any_value(segment_mean)
        FROM (SELECT *, avg(ln(quantity)) OVER (PARTITION BY buyer_segment) segment_mean FROM log)
        GROUP BY buyer_id, product_id""",
        )
    )
    assert np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1] > 0.05
    medians = dict(rows_of(log, "SELECT buyer_segment, median(quantity) FROM log GROUP BY 1"))
    assert medians["wholesale"] == max(medians.values())
    assert medians["wholesale"] > 2 * medians["office"]


def test_it_makes_popularity_skewed_but_not_degenerate(log):
    ((top_share, top50_share),) = rows_of(
        log,
        """
        SELECT max(n) / sum(n), sum(n) FILTER (WHERE r <= 50) / sum(n)
        FROM (SELECT count(*) n, row_number() OVER (ORDER BY count(*) DESC) r FROM log GROUP BY product_id)""",
    )
    assert top_share < 0.05
    assert 0.15 < top50_share < 0.6


def test_its_memory_does_not_grow_with_rows(monkeypatch):
    """Working memory follows buyers, products and batch size; ten times the rows needs about the same."""
    monkeypatch.setattr(demo_data, "BLOCK_ROWS", 4_096)  # many internal blocks at a test's size

    def peak(rows: int) -> int:
        tracemalloc.start()
        for _ in iter_batches(DemoSpec(rows=rows, buyers=300, products=200), batch_rows=5_000):
            pass
        peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak_bytes

    assert peak(200_000) < 1.3 * peak(20_000)


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("format", ["parquet", "csv"])
def test_it_writes_a_file_duckdb_reads_with_the_same_rows(tmp_path, format):
    spec = DemoSpec(rows=6_000, seed=4)
    path = tmp_path / "nested" / f"purchases.{format}"
    summary = write(spec, path, format=format)
    assert set(summary) == {"rows", "buyers", "products", "path", "format", "seconds"}
    assert (summary["rows"], summary["path"], summary["format"]) == (6_000, str(path), format)
    reader = "read_parquet" if format == "parquet" else "read_csv"
    ((rows, buyers, products, quantity),) = duckdb.sql(
        f"SELECT count(*), count(DISTINCT buyer_id), count(DISTINCT product_id), sum(quantity) FROM {reader}('{path}')"
    ).fetchall()
    expected = generate(spec)
    assert (rows, buyers, products) == (6_000, summary["buyers"], summary["products"])
    assert quantity == pytest.approx(sum(expected.column("quantity").to_pylist()))
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    if format == "parquet":
        assert pq.read_table(path).equals(expected)


def test_it_leaves_no_file_under_the_final_name_when_writing_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_data, "BLOCK_ROWS", 1_000)
    monkeypatch.setattr(demo_data, "ROW_GROUP_ROWS", 1_000)
    real_block = demo_data._World.block
    written = []

    def failing_block(world, index):
        if index == 3:
            raise RuntimeError("disk on fire")
        written.append(index)
        return real_block(world, index)

    monkeypatch.setattr(demo_data._World, "block", failing_block)
    path = tmp_path / "out" / "purchases.parquet"
    with pytest.raises(RuntimeError, match="disk on fire"):
        write(DemoSpec(rows=10_000), path)
    assert written == [0, 1, 2]  # it failed mid-write, after some row groups
    assert list(path.parent.iterdir()) == []

    path.write_bytes(b"previous complete file")
    with pytest.raises(RuntimeError):
        write(DemoSpec(rows=10_000), path, format="csv")
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    assert path.read_bytes() == b"previous complete file"


def test_it_rejects_an_unknown_format_naming_the_field(tmp_path):
    with pytest.raises(ValueError, match="^format: "):
        write(DemoSpec(rows=1_000), tmp_path / "x.json", format="json")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- validation and command line


@pytest.mark.parametrize(
    "field, changes",
    [
        ("rows", {"rows": 999}),
        ("rows", {"rows": 10_000_001}),
        ("rows", {"rows": "100000"}),
        ("seed", {"seed": -1}),
        ("buyers", {"buyers": 5}),
        ("products", {"products": 10}),
        ("start", {"start": "2025-01-01"}),
        ("days", {"days": 0}),
    ],
)
def test_it_names_the_field_of_an_invalid_spec(field, changes):
    with pytest.raises(ValueError, match=f"^{field}: "):
        DemoSpec(**{"rows": 10_000, **changes})


def test_its_command_line_writes_and_prints_the_summary(tmp_path):
    path = tmp_path / "x.csv"
    done = subprocess.run(
        [sys.executable, "-m", "ml_pipeline.demo_data", "--rows", "2000", "--out", str(path), "--seed", "7"],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(done.stdout)
    assert (summary["rows"], summary["format"], summary["path"]) == (2_000, "csv", str(path))
    assert re.match(r'"buyer_id","product_id","timestamp"', path.read_text().splitlines()[0])

    refused = subprocess.run(
        [sys.executable, "-m", "ml_pipeline.demo_data", "--rows", "5", "--out", str(tmp_path / "y.parquet")],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2
    assert "rows: must be" in refused.stderr
    assert not (tmp_path / "y.parquet").exists()
