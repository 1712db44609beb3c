"""The Models page (the registry) in a headless Chromium: KPI counts, filters, and a model's versions drawer
with their metrics and deltas. Deploying to a real endpoint is in test_training_live.py."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from ml_platform.registry.models import RegisteredModel
from ml_platform.training.models import TrainingRun
from tests.helpers import copies

pytestmark = pytest.mark.browser


@pytest.fixture
def two_versions(pending_run):
    """recs v1 and v2 (ORM copies: registered, but with no files to serve)."""
    first, second = copies(
        pending_run["id"],
        1,
        status=TrainingRun.COMPLETED,
        blessed=True,
        registry_version=1,
        final_metrics={"recall_at_100": 0.30},
    ) + copies(
        pending_run["id"],
        1,
        status=TrainingRun.COMPLETED,
        blessed=True,
        registry_version=2,
        final_metrics={"recall_at_100": 0.35},
    )
    RegisteredModel.objects.filter(pk=first.registered_model_id).update(
        latest_version=2, total_versions=2, first_registered_at=first.created_at
    )
    return first.registered_model_id


def test_the_registry_lists_models_with_counts_and_a_versions_drawer(
    logged_in_page, olivia, project, two_versions, screenshots
):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/models/")
    expect(page.locator("[data-kpi=total]")).to_have_text("1")
    expect(page.locator("[data-kpi=registered]")).to_have_text("1")
    row = page.locator(f"#models tr[data-model='{two_versions}']")
    expect(row.locator("td").nth(3)).to_have_text("v2")

    row.locator("[data-action=versions]").click()
    drawer = page.locator(".model-drawer")
    expect(drawer.locator("tr[data-version]")).to_have_count(2)
    expect(drawer.locator("tr[data-version='2'] [data-role=metrics]")).to_have_text("recall_at_100 0.35 +0.05")
    expect(drawer.locator("tr[data-version='2'] td").first).to_have_text("v2")
    expect(drawer.locator("[data-role=serving]")).to_have_text("Not deployed")
    expect(drawer.locator("tr[data-version='1']")).to_contain_text("not deployable")  # no files to serve
    screenshots("models")


def test_the_model_type_filter_is_in_the_url(logged_in_page, olivia, project, two_versions):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/models/")
    page.select_option("#model-filters select[name=model_type]", "ranking")
    expect(page.locator("#models tr[data-model]")).to_have_count(0)
    assert parse_qs(urlsplit(page.url).query)["model_type"] == ["ranking"]
    page.select_option("#model-filters select[name=model_type]", "retrieval")
    expect(page.locator("#models tr[data-model]")).to_have_count(1)
