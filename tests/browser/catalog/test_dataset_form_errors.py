"""The new dataset page refuses what the API refuses, with the same message next to the field at fault, and a
refused save leaves nothing behind (no dataset; a refused file, no upload)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from ml_platform.datasets.models import Dataset, Upload
from tests.browser.catalog.pages import LIVE_MS, import_retail, pick
from tests.helpers import needs_retail

pytestmark = pytest.mark.browser


def errors_of(page, field: str):
    return page.locator(f'[data-errors-for="{field}"] .field-error')


def save_refused(page) -> None:
    page.fill('input[name="name"]', "retail")
    with page.expect_navigation():
        page.click("#save-dataset")
    expect(page.locator("#form-errors")).to_be_visible()
    assert not Dataset.objects.exists()


def add_condition(page, column: str, op: str, value: str) -> None:
    page.click("#add-condition")
    page.fill('input[name="filters.conditions[0].column"]', column)
    pick(page, "filters.conditions[0].op", op)
    page.fill('input[name="filters.conditions[0].value"]', value)


@needs_retail
def test_a_misspelt_column_is_named_with_the_closest_one_next_to_its_field(logged_in_page, olivia, project, shots):
    page = logged_in_page(olivia)
    import_retail(page, project)
    add_condition(page, "Invoiceno", "not_starts_with", "C")

    save_refused(page)
    expect(errors_of(page, "filters.conditions[0].column")).to_have_text(
        "column 'Invoiceno' is not in the source (did you mean 'InvoiceNo'?)", timeout=LIVE_MS
    )
    # What was typed stays, to be corrected in place.
    expect(page.locator('input[name="filters.conditions[0].column"]')).to_have_value("Invoiceno")
    expect(page.locator('select[name="mapping.buyer_id"]')).to_have_value("CustomerID")
    shots(page, "dataset-error")


@needs_retail
def test_a_filter_value_of_the_wrong_type_is_refused_next_to_the_value(logged_in_page, olivia, project):
    page = logged_in_page(olivia)
    import_retail(page, project)
    add_condition(page, "Quantity", "gt", "abc")

    save_refused(page)
    message = errors_of(page, "filters.conditions[0].value")
    expect(message).to_have_count(1)
    expect(message).to_contain_text("abc")


def test_a_text_column_mapped_as_the_timestamp_is_refused_with_a_sample_value(
    logged_in_page, olivia, project, text_timestamp_csv
):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/datasets/new/")
    page.set_input_files("#upload-file", str(text_timestamp_csv))
    expect(page.locator("#detected-columns tbody tr")).to_have_count(3, timeout=LIVE_MS)
    pick(page, "mapping.buyer_id", "customer")
    pick(page, "mapping.product_id", "item")
    pick(page, "mapping.timestamp", "when")

    save_refused(page)
    message = errors_of(page, "mapping.timestamp")
    expect(message).to_have_count(1)
    expect(message).to_contain_text("yesterday")


def test_an_empty_file_is_refused_at_upload_next_to_the_file_input(logged_in_page, olivia, project, empty_csv):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/datasets/new/")
    page.set_input_files("#upload-file", str(empty_csv))

    expect(errors_of(page, "file")).to_have_text("the file is empty", timeout=LIVE_MS)
    assert not Upload.objects.exists()
    expect(page.locator("#upload-choice option")).to_have_count(1)  # only "choose"
