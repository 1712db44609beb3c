"""Keeping the catalog in the browser: edit, duplicate, delete (asked first, refused while in use), uploads,
the project page's search, and the model config's parameter chart at a desktop's and a phone's width.

Objects are made through the API (``api``) or the shared fixtures; what the pages did is read back from the
API and the database.
"""

from __future__ import annotations

import os
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.test import Client
from playwright.sync_api import expect

from ml_platform.audit.models import AuditEvent
from ml_platform.datasets.models import Dataset, Upload
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from tests import helpers
from tests.browser.catalog.pages import LIVE_MS, pick
from tests.browser.widgets import wait_for_widgets

pytestmark = pytest.mark.browser

MULTITASK = {
    "model_type": "multitask",
    "buyer_tower": [{"type": "dense", "units": 64}, {"type": "dropout", "rate": 0.1}],
    "product_tower": [{"type": "dense", "units": 64}],
    "output_dim": 32,
}

# The chart drawn on the canvas ``selector``, as Chart.js laid it out: the plot area, and whether the widest
# category label fits the room its axis has. Null until the chart exists (see test_pages.CHART_ON_CANVAS).
CHART_LAYOUT = """(selector) => {
    if (!window.testChartJs) {
        import("chart.js").then((module) => { window.testChartJs = module; });
        return null;
    }
    const chart = window.testChartJs.Chart.getChart(document.querySelector(selector));
    if (!chart) return null;
    const y = chart.scales.y;
    chart.ctx.font = window.testChartJs.defaults.font.size + "px " + window.testChartJs.defaults.font.family;
    const widest = Math.max(...chart.data.labels.map((label) => chart.ctx.measureText(label).width));
    return { plotWidth: chart.chartArea.width, plotHeight: chart.chartArea.height, labelRoom: y.width, widest };
}"""


@pytest.fixture
def multitask(api, project, feature_config):
    return helpers.model_config(api, project, "hybrid", MULTITASK, feature_config)


def confirm_in_dialog(page, opener: str) -> None:
    wait_for_widgets(page)  # the page may have just been reloaded by the previous confirmation
    page.click(opener)
    dialog = page.locator("dialog[open]")
    expect(dialog).to_be_visible()
    with page.expect_navigation():
        dialog.locator("button.danger").click()


# --- datasets ---------------------------------------------------------------


def test_a_dataset_a_feature_config_reads_is_not_deleted_and_the_page_says_why(
    logged_in_page, olivia, dataset, feature_config
):
    page = logged_in_page(olivia)
    page.goto(f"/datasets/{dataset['id']}/")
    confirm_in_dialog(page, "#delete-dataset")

    assert urlsplit(page.url).path == f"/datasets/{dataset['id']}/"
    expect(page.locator(".flash.error")).to_contain_text("Still in use by feature config 'standard'")
    assert Dataset.objects.filter(pk=dataset["id"]).exists()


def test_an_unused_dataset_is_deleted_once_confirmed_and_the_deletion_is_audited(
    logged_in_page, olivia, project, dataset
):
    page = logged_in_page(olivia)
    page.goto(f"/datasets/{dataset['id']}/")
    page.click("#delete-dataset")
    page.keyboard.press("Escape")  # changing one's mind closes the dialog, and nothing happens
    expect(page.locator("dialog[open]")).to_have_count(0)
    assert Dataset.objects.filter(pk=dataset["id"]).exists()

    confirm_in_dialog(page, "#delete-dataset")
    assert urlsplit(page.url).path == f"/projects/{project.id}/"
    assert not Dataset.objects.filter(pk=dataset["id"]).exists()
    assert AuditEvent.objects.filter(object_id=dataset["id"], action="delete").count() == 1


def test_editing_a_dataset_adds_a_filter_previewed_live_and_saved(logged_in_page, olivia, dataset, api, shots):
    page = logged_in_page(olivia)
    page.goto(f"/datasets/{dataset['id']}/")
    with page.expect_navigation():
        page.click("#edit-dataset")
    expect(page.locator('input[name="source:file.path"]')).to_have_value(dataset["source"]["path"])
    expect(page.locator('select[name="mapping.buyer_id"]')).to_have_value("customer")
    expect(page.locator('[data-live-kpi="rows"]')).to_have_text(str(dataset["preview"]["rows"]), timeout=LIVE_MS)

    page.click("#add-condition")
    page.fill('input[name="filters.conditions[0].column"]', "order_id")
    pick(page, "filters.conditions[0].op", "not_starts_with")
    page.fill('input[name="filters.conditions[0].value"]', "C")
    page.locator('input[name="filters.conditions[0].value"]').blur()
    expect(page.locator('[data-live-kpi="rows"]')).to_have_text(str(dataset["preview"]["rows"] - 1), timeout=LIVE_MS)
    assert api.get(f"/api/datasets/{dataset['id']}/").json()["filters"] == {}  # the preview saved nothing
    shots(page, "dataset-edit")

    with page.expect_navigation():
        page.click("#save-dataset")
    saved = api.get(f"/api/datasets/{dataset['id']}/").json()
    assert saved["filters"] == {"conditions": [{"column": "order_id", "op": "not_starts_with", "value": "C"}]}
    assert saved["preview"]["rows"] == dataset["preview"]["rows"] - 1
    assert AuditEvent.objects.filter(object_id=dataset["id"], action="update").count() == 1


def test_duplicating_a_dataset_starts_the_new_dataset_form_from_a_copy(logged_in_page, olivia, project, dataset):
    page = logged_in_page(olivia)
    page.goto(f"/datasets/{dataset['id']}/")
    with page.expect_navigation():
        page.click("#duplicate-dataset")
    expect(page.locator('input[name="name"]')).to_have_value("purchases copy")
    expect(page.locator('input[name="source.kind"][value="file"]')).to_be_checked()
    expect(page.locator('select[name="mapping.product_id"]')).to_have_value("item")
    assert Dataset.objects.count() == 1  # nothing is copied until the form is saved

    with page.expect_navigation():
        page.click("#save-dataset")
    copy = Dataset.objects.get(name="purchases copy")
    original = Dataset.objects.get(pk=dataset["id"])
    assert (copy.source, copy.mapping, copy.filters) == (original.source, original.mapping, original.filters)


# --- uploads and the project page ------------------------------------------------


def test_uploads_are_listed_and_deleted_once_confirmed_unless_a_dataset_reads_one(
    logged_in_page, olivia, project, api, purchases_csv, purchases_mapping, tmp_path
):
    used = api.upload(f"/api/projects/{project.id}/uploads/", purchases_csv).json()
    spare_file = tmp_path / "spare.csv"
    spare_file.write_text(purchases_csv.read_text())
    spare = api.upload(f"/api/projects/{project.id}/uploads/", spare_file).json()
    created = api.post(
        f"/api/projects/{project.id}/datasets/",
        {"name": "uploaded", "source": {"kind": "upload", "upload_id": used["id"]}, "mapping": purchases_mapping},
    )
    assert created.status_code == 201, created.content
    spare_path = Upload.objects.get(pk=spare["id"]).file.path

    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/")
    expect(page.locator("#uploads tbody tr")).to_have_count(2)
    confirm_in_dialog(page, f'#uploads tr[data-upload="{used["id"]}"] button')
    expect(page.locator(".flash.error")).to_contain_text("Still in use by dataset 'uploaded'")
    assert Upload.objects.filter(pk=used["id"]).exists()

    confirm_in_dialog(page, f'#uploads tr[data-upload="{spare["id"]}"] button')
    expect(page.locator(".flash.success")).to_contain_text("spare.csv")
    expect(page.locator("#uploads tbody tr")).to_have_count(1)
    assert not Upload.objects.filter(pk=spare["id"]).exists()
    assert not os.path.exists(spare_path)


def test_the_project_page_search_narrows_every_list_in_place(
    logged_in_page, olivia, project, dataset, feature_config, multitask, shots
):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/")
    page.evaluate("window.__sameDocument = true")
    page.fill("#catalog-search", "hyb")

    expect(page.locator("#datasets tbody")).to_contain_text("No dataset named like “hyb”")
    expect(page.locator("#feature-configs tbody")).to_contain_text("No feature config named like “hyb”")
    expect(page.locator("#model-configs tbody tr")).to_have_count(1)
    expect(page.locator("#model-configs tbody tr td").first).to_have_text("hybrid")
    assert page.evaluate("window.__sameDocument") is True
    assert "q=hyb" in page.url  # the narrowed page has its own address
    shots(page, "project-search")


# --- configs ------------------------------------------------------------------


def test_duplicating_a_model_config_keeps_its_layers_and_counts(logged_in_page, olivia, project, multitask, api):
    page = logged_in_page(olivia)
    page.goto(f"/model-configs/{multitask['id']}/")
    with page.expect_navigation():
        page.click("#duplicate-config")
    expect(page.locator('input[name="name"]')).to_have_value("hybrid copy")
    expect(page.locator('select[name="config.buyer_tower[1].type"]')).to_have_value("dropout")
    expect(page.locator("#live-total-params")).to_have_text(
        f"{multitask['parameter_counts']['total']:,}", timeout=LIVE_MS
    )

    with page.expect_navigation():
        page.click("#save-config")
    copy = ModelConfig.objects.get(name="hybrid copy")
    assert copy.config == ModelConfig.objects.get(pk=multitask["id"]).config
    assert api.get(f"/api/model-configs/{copy.id}/").json()["parameter_counts"] == multitask["parameter_counts"]


def test_a_layer_of_the_wrong_shape_is_refused_next_to_its_field(logged_in_page, olivia, multitask):
    page = logged_in_page(olivia)
    page.goto(f"/model-configs/{multitask['id']}/edit/")
    page.fill('input[name="config.buyer_tower[1].rate"]', "1.5")
    page.locator('input[name="config.buyer_tower[1].rate"]').blur()
    expect(page.locator("#live-errors")).to_contain_text("config.buyer_tower[1].rate", timeout=LIVE_MS)

    with page.expect_navigation():
        page.click("#save-config")
    expect(page.locator('[data-errors-for="config.buyer_tower[1].rate"]')).to_contain_text(
        "less than 1", timeout=LIVE_MS
    )
    assert ModelConfig.objects.get(pk=multitask["id"]).config["buyer_tower"][1]["rate"] == 0.1


def test_weight_averaging_is_chosen_on_the_model_form_and_saved(logged_in_page, olivia, multitask, shots):
    page = logged_in_page(olivia)
    page.goto(f"/model-configs/{multitask['id']}/edit/")
    page.select_option('select[name="config.weight_averaging"]', "true")
    page.fill('input[name="config.weight_averaging_momentum"]', "0.99")
    shots(page, "model-edit")
    with page.expect_navigation():
        page.click("#save-config")
    saved = ModelConfig.objects.get(pk=multitask["id"]).config
    assert (saved["weight_averaging"], saved["weight_averaging_momentum"]) == (True, 0.99)


@pytest.mark.parametrize("width", [1280, 390])
def test_the_parameter_chart_has_room_for_its_bars_and_labels(logged_in_page, olivia, multitask, width):
    page = logged_in_page(olivia)
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"/model-configs/{multitask['id']}/")

    layout = page.wait_for_function(CHART_LAYOUT, arg="#params-chart").json_value()
    assert layout["plotHeight"] >= 100, layout  # three bars, not a sliver
    assert layout["plotWidth"] >= width * 0.4, layout
    assert layout["labelRoom"] >= layout["widest"], layout  # "product tower" is not cut off
    canvas = page.locator("#params-chart").bounding_box()
    assert canvas["x"] >= 0 and canvas["x"] + canvas["width"] <= width


# --- API tokens -----------------------------------------------------------------


def test_a_token_is_shown_once_listed_by_its_prefix_and_revoked_once_confirmed(logged_in_page, olivia, shots):
    page = logged_in_page(olivia)
    with page.expect_navigation():
        page.click("#tokens-link")
    page.fill('#issue-token input[name="name"]', "nightly-export")
    with page.expect_navigation():
        page.click("#issue-token button[type=submit]")
    raw = page.locator("#issued-token-value").inner_text().strip()
    assert raw.startswith("mlp_")
    shots(page, "tokens")

    row = page.locator("#tokens tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").first).to_have_text("nightly-export")
    expect(row.locator("code")).to_have_text(f"{raw[:10]}…")
    client = helpers.JsonClient(Client(), raw)
    assert client.get("/api/tokens/").status_code == 200

    page.goto("/tokens/")
    expect(page.locator("#issued-token-value")).to_have_count(0)  # shown once
    assert raw not in page.content()

    confirm_in_dialog(page, "#tokens tbody tr button")
    expect(page.locator("#tokens tbody")).to_contain_text("No tokens yet.")
    assert client.get("/api/tokens/").status_code == 401


def test_a_preview_that_failed_says_why_and_stays_shown(time_travel, logged_in_page, olivia, dataset, purchases_csv):
    page = logged_in_page(olivia)
    page.goto(f"/datasets/{dataset['id']}/")
    before = page.locator("#preview .muted").inner_text()
    purchases_csv.unlink()
    time_travel.shift(timedelta(hours=1))
    page.click("#refresh-preview")

    expect(page.locator("#preview-summary")).to_contain_text("The source could not be read")
    expect(page.locator("#preview-summary")).to_contain_text("does not exist")
    expect(page.locator("#preview .muted")).not_to_have_text(before)  # "Previewed …" is the refresh's time
    page.reload()
    expect(page.locator("#preview-summary")).to_contain_text("does not exist")


def test_a_feature_of_the_wrong_kind_for_its_column_is_refused_next_to_it(logged_in_page, olivia, project, dataset):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/feature-configs/new/?dataset={dataset['id']}")
    page.fill('input[name="name"]', "numeric-segment")
    page.click("#add-buyer-feature")
    pick(page, "config.buyer_tower.features[1].column", "segment")
    pick(page, "config.buyer_tower.features[1].kind", "numeric")
    expect(page.locator("#live-errors")).to_contain_text("segment", timeout=LIVE_MS)

    with page.expect_navigation():
        page.click("#save-config")
    message = page.locator('[data-errors-for="config.buyer_tower.features[1].column"]')
    expect(message).to_contain_text("column 'segment' is string; a numeric feature needs float or int")
    assert not FeatureConfig.objects.exists()
