"""Ids are mapped through lookup tables of their distinct values (``create_id_lookups``), not per row.

The lookup is a speed-up only: the rows it gives must be exactly the rows the per-row expressions
(:func:`ml_pipeline.data.query.id_expr`) give, for text, float and integer id columns alike.
"""

from __future__ import annotations

import math
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml_pipeline.config.dataset import DatasetConfig
from ml_pipeline.data import sources
from ml_pipeline.data.query import DUCKDB, RowsQuery

MESSY_TEXT = ["17850", " 17850 ", "17850.0", "17850.00", "\u00a017851\t", "\ufeff17852", "NA", "N/A", "null", "",
              "   ", None, "nan", "-3.0", "1.5", "A-7"]  # fmt: skip
MESSY_FLOAT = [17850.0, 17850.5, -3.0, 0.0, -0.0, math.nan, None, 1e15]


def _dataset(path, buyer_values, product_values) -> DatasetConfig:
    n = max(len(buyer_values), len(product_values))
    table = pa.table(
        {
            "customer": [buyer_values[i % len(buyer_values)] for i in range(n)],
            "item": [product_values[i % len(product_values)] for i in range(n)],
            "quantity": list(range(n)),
        }
    )
    pq.write_table(table, path)
    return DatasetConfig.model_validate(
        {
            "source": {"kind": "file", "path": str(path)},
            "mapping": {"buyer_id": "customer", "product_id": "item", "target": "quantity"},
        }
    )


def _rows_both_ways(config: DatasetConfig) -> tuple[Counter, Counter, dict]:
    with sources.open_rows(config, lookup_ids=True) as con:
        columns = sources.source_columns(con)
        looked_up = Counter(con.execute("SELECT buyer_id, product_id, target FROM rows").fetchall())
        inline = RowsQuery(DUCKDB, columns, config.mapping, config.filters)
        con.execute(f"CREATE TEMP VIEW inline_mapped AS {inline.mapped_source()}")
        per_row = Counter(
            con.execute(f"SELECT buyer_id, product_id, target FROM ({inline.rows('inline_mapped')})").fetchall()
        )
        lookups = sources.create_id_lookups(con, columns, config.mapping)
    return looked_up, per_row, lookups


@pytest.mark.parametrize(
    ("buyers", "products"),
    [(MESSY_TEXT, MESSY_TEXT[::-1]), (MESSY_FLOAT, MESSY_TEXT), (list(range(-2, 12)), MESSY_FLOAT)],
    ids=["text ids", "float buyer ids", "integer buyer ids"],
)
def test_looked_up_ids_give_exactly_the_rows_the_per_row_expressions_give(tmp_path, buyers, products):
    looked_up, per_row, _ = _rows_both_ways(_dataset(tmp_path / "messy.parquet", buyers, products))
    assert looked_up == per_row
    assert looked_up  # some rows are kept, so the comparison compares something


def test_text_and_float_ids_are_looked_up_and_integer_ones_cast_in_place(tmp_path):
    _, _, lookups = _rows_both_ways(_dataset(tmp_path / "ids.parquet", list(range(5)), MESSY_FLOAT))
    assert set(lookups) == {"product_id"}
