"""A folded part of the dataset form the user opened stays open when the form is rendered again by the server
(a filter or a feature row added or removed)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.catalog.pages import LIVE_MS

pytestmark = pytest.mark.browser


def test_opened_options_stay_open_when_a_row_is_added_and_removed(logged_in_page, olivia, dataset):
    page = logged_in_page(olivia)
    page.goto(f"/datasets/{dataset['id']}/edit/")
    csv_options = page.locator('[data-source-panel="file"] details[data-fold="csv"]')
    reading = page.locator('details[data-fold="reading"]')
    expect(csv_options).not_to_have_attribute("open", "")
    expect(reading).not_to_have_attribute("open", "")
    csv_options.locator("summary").click()
    reading.locator("summary").click()

    page.click("#add-condition")
    expect(page.locator('input[name="filters.conditions[0].column"]')).to_be_visible(timeout=LIVE_MS)
    expect(csv_options).to_have_attribute("open", "")
    expect(reading).to_have_attribute("open", "")

    page.click('button[value="remove:filters.conditions[0]"]')
    expect(page.locator('input[name="filters.conditions[0].column"]')).to_have_count(0, timeout=LIVE_MS)
    expect(csv_options).to_have_attribute("open", "")
    expect(reading).to_have_attribute("open", "")


def test_a_part_left_folded_stays_folded(logged_in_page, olivia, dataset):
    page = logged_in_page(olivia)
    page.goto(f"/datasets/{dataset['id']}/edit/")
    page.click("#add-condition")
    expect(page.locator('input[name="filters.conditions[0].column"]')).to_be_visible(timeout=LIVE_MS)
    expect(page.locator('[data-source-panel="file"] details[data-fold="csv"]')).not_to_have_attribute("open", "")
