"""Fixtures of the catalog pages' browser tests: the real retail file, an independent count of it, screenshots.

``shots`` saves a screenshot at 1280 and 390 px wide when MLP_SCREENSHOTS names a folder (for a person to
look at); without it, it only checks that nothing is wider than the window at 390 px.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from tests.helpers import RETAIL_CSV

WIDTHS = (1280, 390)


@pytest.fixture
def retail_counts() -> dict:
    """The retail sample without cancellations (InvoiceNo 'C…') and rows missing an id, counted by DuckDB alone."""
    con = duckdb.connect()
    rows, buyers, products = con.execute(
        f"""SELECT count(*), count(DISTINCT CustomerID), count(DISTINCT StockCode)
            FROM read_csv('{RETAIL_CSV}') WHERE NOT starts_with(InvoiceNo, 'C')
            AND CustomerID IS NOT NULL AND StockCode IS NOT NULL AND InvoiceDate IS NOT NULL"""
    ).fetchone()
    source_rows = con.execute(f"SELECT count(*) FROM read_csv('{RETAIL_CSV}')").fetchone()[0]
    con.close()
    return {"rows": rows, "buyers": buyers, "products": products, "source_rows": source_rows}


@pytest.fixture
def empty_csv(tmp_path) -> Path:
    path = tmp_path / "empty.csv"
    path.write_text("")
    return path


@pytest.fixture
def text_timestamp_csv(tmp_path) -> Path:
    """Purchases whose 'when' column is words, not times."""
    path = tmp_path / "words.csv"
    path.write_text("customer,item,when\nc1,p1,yesterday\nc2,p2,last week\nc1,p2,a while ago\n")
    return path


@pytest.fixture
def shots():
    """``shots(page, "name")``: screenshots at each width (saved when MLP_SCREENSHOTS is set); the page must
    not scroll sideways at 390 px."""
    folder = os.environ.get("MLP_SCREENSHOTS")

    def take(page, name: str) -> None:
        original = page.viewport_size
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": original["height"]})
            if folder:
                page.screenshot(path=str(Path(folder) / f"{name}-{width}.png"), full_page=True)
            if width < 500:
                overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
                assert overflow <= 1, f"{name} is {overflow}px wider than a {width}px window"
        page.set_viewport_size(original)

    return take
