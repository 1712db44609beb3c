"""A new user imports the real retail file entirely through the pages: upload, map by picking columns, filter
out cancellations, check the preview, then a feature config and a model config whose live numbers are the API's.

Every number the pages show is compared with an independent source: DuckDB on the file for the preview, the
API's answer for the tensor breakdown and the parameter counts.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from ml_platform.audit.models import AuditEvent
from ml_platform.datasets.models import Dataset, Upload
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from tests.browser.catalog.pages import LIVE_MS, import_retail, live_text, pick
from tests.helpers import DROP_CANCELLATIONS, needs_retail

pytestmark = [pytest.mark.browser, needs_retail]


def test_a_retail_file_becomes_a_dataset_a_feature_config_and_a_model_config_through_the_pages(
    logged_in_page, olivia, project, api, retail_counts, shots
):
    page = logged_in_page(olivia)
    import_retail(page, project)

    # The columns are listed as the source has them, with their types and a few values.
    customer = page.locator('#detected-columns tr[data-column="CustomerID"]')
    expect(customer.locator("td").nth(1)).to_have_text("DOUBLE")
    expect(customer.locator(".sample").first).to_have_text("17850.0")
    assert Upload.objects.get(project=project).original_name == "online_retail_sample.csv"

    page.click("#add-buyer_features")
    pick(page, "mapping.buyer_features[0].column", "Country")
    page.click("#add-product_features")
    pick(page, "mapping.product_features[0].column", "Description")
    page.click("#add-condition")
    condition = DROP_CANCELLATIONS["conditions"][0]
    page.fill('input[name="filters.conditions[0].column"]', condition["column"])
    pick(page, "filters.conditions[0].op", condition["op"])
    page.fill('input[name="filters.conditions[0].value"]', condition["value"])
    page.locator('input[name="filters.conditions[0].value"]').blur()
    page.fill('input[name="name"]', "retail")

    # The live preview counts what an independent DuckDB count of the file finds.
    expect(page.locator('[data-live-kpi="rows"]')).to_have_text(f"{retail_counts['rows']:,}", timeout=LIVE_MS)
    expect(page.locator('[data-live-kpi="buyers"]')).to_have_text(f"{retail_counts['buyers']:,}", timeout=LIVE_MS)
    expect(page.locator('[data-live-kpi="products"]')).to_have_text(f"{retail_counts['products']:,}", timeout=LIVE_MS)
    dropped = retail_counts["source_rows"] - retail_counts["rows"]
    expect(page.locator('[data-live-kpi="dropped_rows"]')).to_have_text(f"{dropped:,}", timeout=LIVE_MS)
    expect(page.locator("#live-summary")).to_contain_text("12 months", timeout=LIVE_MS)
    expect(page.locator("#live-sample tbody tr")).to_have_count(10, timeout=LIVE_MS)
    assert not Dataset.objects.exists()  # a preview writes nothing
    shots(page, "dataset-new")

    with page.expect_navigation():
        page.click("#save-dataset")
    dataset = Dataset.objects.get(project=project, name="retail")
    assert urlsplit(page.url).path == f"/datasets/{dataset.id}/"
    stored = api.get(f"/api/datasets/{dataset.id}/").json()
    assert (stored["source"]["kind"], stored["source"]["upload_id"]) == ("upload", Upload.objects.get().id)
    assert stored["mapping"]["buyer_id"] == "CustomerID" and stored["filters"] == DROP_CANCELLATIONS
    assert stored["preview"]["rows"] == retail_counts["rows"]
    expect(page.locator("#preview-summary")).to_have_text(stored["summary"])
    assert AuditEvent.objects.filter(object_id=dataset.id, action="create").count() == 1

    # A feature config on it: a categorical Country beside the ids, a cross, the quantity as the target.
    page.goto(f"/projects/{project.id}/")
    with page.expect_navigation():
        page.click("#new-feature-config")
    page.fill('input[name="name"]', "retail-features")
    page.click("#add-buyer-feature")
    pick(page, "config.buyer_tower.features[1].column", "Country")
    pick(page, "config.buyer_tower.features[1].kind", "categorical")
    page.fill('input[name="config.buyer_tower.features[1].embedding_dim"]', "8")
    page.fill('input[name="config.buyer_tower.features[1].max_vocab_size"]', "50")
    page.click("#add-product-feature")
    pick(page, "config.product_tower.features[1].column", "timestamp")
    pick(page, "config.product_tower.features[1].kind", "timestamp")
    pick(page, "config.target.column", "target")
    page.click("#add-target-transform")
    expect(page.locator('[data-transform="0"]')).to_be_visible()
    expect(page.locator('[data-live-total="buyer"]')).to_have_text("40D", timeout=LIVE_MS)  # 32 + 8, live
    # 32 + sin and cos of two periods
    expect(page.locator('[data-live-total="product"]')).to_have_text("36D", timeout=LIVE_MS)
    live = {tower: live_text(page, f'[data-live-total="{tower}"]') for tower in ("buyer", "product")}
    shots(page, "feature-config-new")
    with page.expect_navigation():
        page.click("#save-config")
    fc = FeatureConfig.objects.get(project=project)
    answer = api.get(f"/api/feature-configs/{fc.id}/").json()
    for tower in ("buyer", "product"):
        assert live[tower] == f"{answer['breakdown'][tower]['total']}D"
        expect(page.locator(f'[data-total="{tower}"]')).to_have_text(live[tower])
    assert [f["name"] for f in answer["breakdown"]["buyer"]["features"]] == ["buyer_id", "Country"]
    assert [t["op"] for t in answer["config"]["target"]["transforms"]] == ["log1p"]

    # A multitask model config: a stack of layers per tower, parameter counts live, the same as the API's.
    page.goto(f"/projects/{project.id}/")
    with page.expect_navigation():
        page.click("#new-model-config")
    page.fill('input[name="name"]', "retail-hybrid")
    pick(page, "config.model_type", "multitask")
    pick(page, "feature_config_id", str(fc.id))
    page.click("#add-buyer_tower-layer")
    pick(page, "config.buyer_tower[1].type", "dropout")
    page.fill('input[name="config.buyer_tower[1].rate"]', "0.2")
    page.fill('input[name="config.output_dim"]', "16")
    page.locator('input[name="config.output_dim"]').blur()
    expect(page.locator('#live-panel [data-tower="buyer"] .layers')).to_contain_text("output 16", timeout=LIVE_MS)
    expect(page.locator('#live-panel [data-tower="rating_head"]')).to_be_visible(timeout=LIVE_MS)
    shots(page, "model-config-new")
    shown = live_text(page, "#live-total-params")
    parts = ("buyer", "product", "rating_head")
    shown_parts = {part: live_text(page, f'#live-panel [data-tower="{part}"] h3 .num') for part in parts}
    with page.expect_navigation():
        page.click("#save-config")
    mc = ModelConfig.objects.get(project=project)
    counts = api.get(f"/api/model-configs/{mc.id}/").json()["parameter_counts"]
    assert shown == f"{counts['total']:,}"
    assert shown_parts == {
        "buyer": f"{counts['towers']['buyer']['total']:,}",
        "product": f"{counts['towers']['product']['total']:,}",
        "rating_head": f"{counts['rating_head']['total']:,}",
    }
    expect(page.locator("#total-params")).to_have_text(f"{counts['total']:,}")
    assert mc.config["buyer_tower"] == [
        {"type": "dense", "units": 64, "activation": "relu", "l2": 0.0},
        {"type": "dropout", "rate": 0.2},
    ]
    shots(page, "model-config")
