"""The new dataset page's other source kinds: a SQL query (its columns read from the query's answer, like a
file's) and BigQuery (stored and validated here, its columns typed by hand)."""

from __future__ import annotations

import sqlite3

import pytest
from playwright.sync_api import expect

from ml_platform.datasets.models import Dataset
from tests.browser.catalog.pages import LIVE_MS, pick
from tests.browser.widgets import wait_for_widgets

pytestmark = pytest.mark.browser


@pytest.fixture
def purchases_sqlite(data_dir):
    path = data_dir / "shop.sqlite"
    path.unlink(missing_ok=True)  # a rerun of the test gets the same data folder
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (customer TEXT, item TEXT, ordered_at TEXT, qty INTEGER)")
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?)",
            [("c1", "p1", "2025-01-01 10:00:00", 2), ("c2", "p1", "2025-01-02 10:00:00", 1), ("c2", "p2", None, 3)],
        )
    db.close()
    return path


def test_a_sqlite_query_is_read_for_its_columns_and_previewed(logged_in_page, olivia, project, purchases_sqlite):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/datasets/new/")
    wait_for_widgets(page)  # the source-kind switch is a widget's: a click before it mounts changes nothing
    page.check('input[name="source.kind"][value="sql"]')
    expect(page.locator('[data-source-panel="upload"]')).to_be_hidden()
    pick(page, "source:sql.engine", "sqlite")
    page.fill('input[name="source:sql.database"]', str(purchases_sqlite))
    page.fill('textarea[name="source:sql.query"]', "SELECT * FROM orders WHERE qty > 1")
    page.locator('textarea[name="source:sql.query"]').blur()

    expect(page.locator("#detected-columns tbody tr")).to_have_count(4, timeout=LIVE_MS)
    expect(page.locator('#detected-columns tr[data-column="qty"] .sample')).to_have_text(["2", "3"], timeout=LIVE_MS)
    pick(page, "mapping.buyer_id", "customer")
    pick(page, "mapping.product_id", "item")
    expect(page.locator('[data-live-kpi="rows"]')).to_have_text("2", timeout=LIVE_MS)
    page.fill('input[name="name"]', "orders")
    with page.expect_navigation():
        page.click("#save-dataset")

    saved = Dataset.objects.get(name="orders")
    assert saved.source == {
        "kind": "sql",
        "engine": "sqlite",
        "database": str(purchases_sqlite),
        "query": "SELECT * FROM orders WHERE qty > 1",
    }
    assert saved.preview["rows"] == 2


def test_a_bigquery_source_is_validated_and_stored_with_its_columns_typed_by_hand(logged_in_page, olivia, project):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/datasets/new/")
    wait_for_widgets(page)  # the source-kind switch is a widget's: a click before it mounts changes nothing
    page.check('input[name="source.kind"][value="bigquery"]')
    expect(page.locator("#columns-hint")).to_contain_text("BigQuery")
    page.fill('input[name="source:bigquery.project"]', "my-shop")
    page.fill('input[name="source:bigquery.table"]', "not a table")
    page.fill('input[name="name"]', "warehouse")
    page.fill('input[name="mapping.buyer_id"]', "customer_id")
    page.fill('input[name="mapping.product_id"]', "sku")
    with page.expect_navigation():
        page.click("#save-dataset")
    expect(page.locator('[data-errors-for="source.table"]')).to_contain_text("dataset.table", timeout=LIVE_MS)
    assert not Dataset.objects.exists()

    page.fill('input[name="source:bigquery.table"]', "sales.orders")
    with page.expect_navigation():
        page.click("#save-dataset")
    saved = Dataset.objects.get(name="warehouse")
    assert (saved.source["project"], saved.source["table"]) == ("my-shop", "sales.orders")
    assert saved.mapping["buyer_id"] == "customer_id"
    expect(page.locator("#preview-summary")).to_contain_text("BigQuery")
