"""What the catalog pages' browser tests do on the pages, shared by them (no test module imports another)."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.helpers import RETAIL_CSV

# A live panel answers after the save's checks and preview (a scan of the source for a dataset): on a busy machine it
# takes a few seconds, more than Playwright's default 5 s for an expectation.
LIVE_MS = 20_000


def pick(page, name: str, value: str) -> None:
    page.select_option(f'select[name="{name}"]', value)


def live_text(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def import_retail(page, project) -> None:
    """Upload the retail file on the new dataset page and pick its columns (the test goes on from there)."""
    page.goto(f"/projects/{project.id}/")
    with page.expect_navigation():
        page.click("#new-dataset")
    page.set_input_files("#upload-file", str(RETAIL_CSV))
    expect(page.locator("#detected-columns tbody tr")).to_have_count(8, timeout=LIVE_MS)
    pick(page, "mapping.buyer_id", "CustomerID")
    pick(page, "mapping.product_id", "StockCode")
    pick(page, "mapping.timestamp", "InvoiceDate")
    pick(page, "mapping.target", "Quantity")
