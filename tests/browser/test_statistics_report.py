"""The statistics report of a real run in a headless Chromium: tables, histograms, the split selector.

The run is executed by the worker in child processes, so it must be committed:
the browser tests' database is transactional (live_server), and each test's
rows are removed after it. Executing a run takes ~15 s, hence one test for
the whole report of a finished run.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.helpers import execute_a_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def report_url(run_id: int) -> str:
    return f"/training/runs/{run_id}/statistics/"


def feature_names(page, table: str) -> list[str]:
    return page.locator(f"#{table} tbody tr[data-feature]").evaluate_all("rows => rows.map(r => r.dataset.feature)")


def test_the_report_of_a_finished_run_shows_its_features_histograms_and_splits(logged_in_page, olivia, project):
    run = execute_a_run(project, olivia)
    page = logged_in_page(olivia)
    response = page.goto(report_url(run.pk))
    assert response.status == 200

    expect(page.locator("main h1")).to_contain_text("recs #1")
    expect(page.locator("#run-status")).to_have_text("Completed")
    expect(page.locator("#back-to-project")).to_have_attribute("href", f"/projects/{project.id}/")

    # The demo data's columns (ml_pipeline.demo_configs.DEMO_MAPPING), each in its table.
    assert feature_names(page, "numeric-features") == ["target", "price"]
    assert {"buyer_id", "product_id", "buyer_segment", "buyer_city", "product_category", "product_subcategory"} == set(
        feature_names(page, "categorical-features")
    )
    segment = page.locator('#categorical-features tr[data-feature="buyer_segment"]')
    expect(segment.locator(".top-values li")).to_have_count(5)
    assert segment.locator(".tv-bar rect").first.bounding_box()["width"] > 0

    # A histogram per numeric column, drawn from StatisticsGen's buckets.
    price_bars = page.locator('#numeric-features tr[data-feature="price"] svg.mini-hist rect')
    assert price_bars.count() == 10
    heights = [float(h) for h in price_bars.evaluate_all("bars => bars.map(b => b.getAttribute('height'))")]
    assert max(heights) == pytest.approx(30) and sum(h > 0 for h in heights) >= 2
    assert page.locator("svg.mini-hist").first.bounding_box()["width"] > 50

    expect(page.locator('#schema-features tr[data-feature="buyer_id"] td').nth(1)).to_have_text("BYTES")
    expect(page.locator('#anomalies li[data-feature="price"]')).to_be_visible()  # the run's planted anomaly

    # The split selector: eval has fewer examples than train.
    train_examples = page.locator("#split-examples").inner_text()
    expect(page.locator('#split-selector a[aria-current="page"]')).to_have_attribute("data-split", "train")
    with page.expect_navigation():
        page.click('#split-selector a[data-split="eval"]')
    assert urlsplit(page.url).query == "split=eval"
    expect(page.locator("#split-name")).to_have_text("eval")
    eval_examples = page.locator("#split-examples").inner_text()
    assert eval_examples != train_examples
    assert 0 < int(eval_examples.replace(",", "")) < int(train_examples.replace(",", ""))
    expect(page.locator('#split-selector a[aria-current="page"]')).to_have_attribute("data-split", "eval")
    assert feature_names(page, "numeric-features") == ["target", "price"]

    if os.environ.get("REPORT_SCREENSHOT"):  # a picture of the page, for whoever changes its look
        page.screenshot(path=os.environ["REPORT_SCREENSHOT"], full_page=True)


def test_a_run_without_statistics_yet_says_so_inside_the_layout(logged_in_page, browser_errors, olivia, pending_run):
    browser_errors.expect("404")  # the page is answered with 404, which Chromium logs
    page = logged_in_page(olivia)
    response = page.goto(report_url(pending_run["id"]))

    assert response.status == 404
    expect(page.locator("#statistics-unavailable")).to_contain_text(
        "Not available yet: No statistics for this run: StatisticsGen has not completed yet (pending)"
    )
    expect(page.locator(".topbar .brand")).to_have_text("ML Platform")
    expect(page.locator("#numeric-features")).to_have_count(0)
    expect(page.locator("main h1")).to_contain_text("recs #1")
