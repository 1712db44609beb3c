"""The view modal's Pipeline tab in a real headless Chromium: a failed run marks its stage and the traceback
expands; a cached stage names the run it was reused from; a log refreshes by itself and downloads whole;
the chosen stage, and the Data insights tab's chosen split, survive the tab's 3 s refresh; Copy path fills the
clipboard; Schedule retraining from the Overview opens the schedule dialog over the modal.

Runs and their logs are fixtures (tests/conftest.py): copies in the states a test needs, with the files the
runner would have left in their folders.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from ml_platform.training.models import TrainingRun
from ml_platform.training.services import run_folder
from tests.browser.widgets import wait_for_widgets
from tests.conftest import TRANSFORM_LOG_LINES

pytestmark = pytest.mark.browser
POLL_MS = 8_000  # the modal asks again every 3 s; a loaded machine may take longer


def open_tab(page, project, run, tab: str):
    """The modal as a shared link opens it: the training page with ?view=<run>&tab=<tab>."""
    page.goto(f"/projects/{project.id}/training/?view={run.pk}&tab={tab}")
    modal = page.locator("#view-modal")
    expect(modal.locator(f"[data-panel={tab}] [data-tab-body={tab}]")).to_be_visible()
    return modal


def test_a_failed_run_marks_its_stage_and_the_traceback_expands(
    logged_in_page, olivia, project, failed_run_with_logs, screenshots
):
    page = logged_in_page(olivia)
    run = failed_run_with_logs
    page.goto(f"/projects/{project.id}/training/")
    expect(page.locator("#view-modal")).to_have_attribute("data-ready", "true")
    page.locator(f"#run-{run.pk} [data-action=view]").click()
    modal = page.locator("#view-modal")
    modal.locator("[data-tab=pipeline]").click()
    expect(page).to_have_url(re.compile(rf"view={run.pk}&tab=pipeline"))

    node = modal.locator(".dag-node[data-stage=Transform]")
    expect(node).to_have_attribute("data-status", "failed")
    expect(node).to_have_class(re.compile(r"\bselected\b"))  # a failed run opens at its failed stage
    expect(node.locator(".dag-icon")).to_have_text("✗")
    expect(modal.locator(".dag-node[data-stage=Trainer] .dag-icon")).to_have_text("○")  # never started
    detail = modal.locator("#view-stage-detail")
    expect(detail).to_have_attribute("data-stage", "Transform")
    expect(detail.locator("#view-stage-error")).to_contain_text("vocabulary of product_id is empty")
    traceback = detail.locator("#view-traceback pre")
    expect(traceback).to_be_hidden()
    detail.locator("#view-traceback summary").click()
    expect(traceback).to_be_visible()
    expect(traceback).to_contain_text("ValueError: empty vocabulary")
    expect(detail.locator("[data-role=log-text]")).to_contain_text(f"Transform line {TRANSFORM_LOG_LINES}")
    screenshots("failed")


def test_a_cached_stage_names_the_run_it_came_from_and_shows_its_lineage(
    logged_in_page, olivia, project, failed_run_with_logs, screenshots
):
    page = logged_in_page(olivia)
    modal = open_tab(page, project, failed_run_with_logs, "pipeline")
    node = modal.locator(".dag-node[data-stage=ExampleGen]")
    expect(node).to_have_attribute("data-status", "cached")
    expect(node.locator("[data-role=cached-from]")).to_have_text("reused from recs-1-cafe0001")
    node.locator("a").click()
    detail = modal.locator("#view-stage-detail")
    expect(detail).to_have_attribute("data-stage", "ExampleGen")
    expect(detail.locator("[data-role=cached-from]")).to_contain_text("recs-1-cafe0001")
    lineage = detail.locator("[data-role=artifact]")
    expect(lineage).to_contain_text("ExampleGen (recs-1-cafe0001)")  # the producer, and the run it ran in
    expect(lineage.locator("[data-input=Compile] code")).to_have_attribute("title", "c0" * 32)
    expect(detail.locator("[data-role=log-text]")).to_have_text("ExampleGen: read 2,450 rows\n")
    screenshots("cached")


def test_a_log_refreshes_on_demand_and_downloads_whole(logged_in_page, olivia, project, failed_run_with_logs):
    page = logged_in_page(olivia)
    run = failed_run_with_logs
    modal = open_tab(page, project, run, "pipeline")
    log = modal.locator("#stage-log-Transform")
    expect(log.locator("[data-role=log-text]")).not_to_contain_text("retried")
    with (run_folder(run) / "Transform" / "stage.log").open("a") as handle:
        handle.write("retried the vocabulary\n")
    log.locator("[data-action=refresh-log]").click()  # a finished run is not asked again by itself
    expect(modal.locator("#stage-log-Transform [data-role=log-text]")).to_contain_text("retried the vocabulary")

    with page.expect_download() as started:
        modal.locator("#stage-log-Transform [data-action=download-log]").click()
    download = started.value
    assert download.suggested_filename == f"run-{run.pk}-Transform.log"
    lines = Path(download.path()).read_text().splitlines()
    assert lines[0] == "Transform line 1" and len(lines) == TRANSFORM_LOG_LINES + 1  # the whole file


def test_the_chosen_stage_survives_the_refresh_of_a_running_run(
    logged_in_page, olivia, project, running_run_with_statistics
):
    page = logged_in_page(olivia)
    modal = open_tab(page, project, running_run_with_statistics, "pipeline")
    expect(modal.locator("#view-stage-detail")).to_have_attribute("data-stage", "Trainer")  # the running one
    expect(modal.locator(".dag-node[data-stage=Trainer] .dag-icon")).to_have_class(re.compile("icon-running"))
    modal.locator(".dag-node[data-stage=Compile] a").click()
    expect(modal.locator("#view-stage-detail")).to_have_attribute("data-stage", "Compile")
    with page.expect_response(lambda r: "/view/pipeline/?stage=Compile" in r.url, timeout=POLL_MS):
        pass  # the next refresh, by itself
    expect(modal).to_have_attribute("data-polling", "true")
    expect(modal.locator("#view-stage-detail")).to_have_attribute("data-stage", "Compile")


def test_the_chosen_split_survives_the_refresh_of_a_running_run(
    logged_in_page, olivia, project, running_run_with_statistics, screenshots
):
    page = logged_in_page(olivia)
    modal = open_tab(page, project, running_run_with_statistics, "insights")
    expect(modal.locator("#view-insights #split-name")).to_have_text("train")
    modal.locator("#view-insights [data-split=eval]").click()
    expect(modal.locator("#view-insights #split-name")).to_have_text("eval")
    with page.expect_response(lambda r: "/view/insights/?split=eval" in r.url, timeout=POLL_MS):
        pass
    expect(modal.locator("#view-insights #split-name")).to_have_text("eval")
    expect(modal.locator("#view-insights #split-examples")).to_have_text("20")
    screenshots("insights-eval")


def test_schedule_retraining_from_the_overview_opens_the_schedule_dialog(
    logged_in_page, olivia, project, completed_run
):
    run = TrainingRun.objects.get(pk=completed_run)
    page = logged_in_page(olivia)
    modal = open_tab(page, project, run, "overview")
    modal.locator("#view-retraining [data-action=schedule]").click()
    dialog = page.locator("#schedule-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#schedule-dialog-title")).to_have_text("Create Training Schedule")
    expect(dialog).to_contain_text(f"Creating schedule from training run {run}")
    dialog.locator("form[method=dialog] button[aria-label=Close]").click()
    expect(dialog).to_have_count(0)  # it leaves the page once closed
    expect(modal).to_be_visible()  # the view modal stays open beneath


def test_copy_path_puts_an_artifacts_path_on_the_clipboard(
    logged_in_page, olivia, project, failed_run_with_logs, screenshots
):
    page = logged_in_page(olivia)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    modal = open_tab(page, project, failed_run_with_logs, "results")
    button = modal.locator("tr[data-artifact=ExampleGen] [data-action=copy-path]")
    wait_for_widgets(page)  # its module is imported after the tab is swapped in
    button.click()
    expect(button).to_have_text("Copied")
    path = failed_run_with_logs.artifacts["ExampleGen"]["uri"]
    assert page.evaluate("navigator.clipboard.readText()") == path
    expect(button).to_have_text("Copy path", timeout=4_000)  # back to its label
    screenshots("results")


def test_the_url_keeps_the_chosen_stage_and_a_reload_opens_it_again(
    logged_in_page, olivia, project, failed_run_with_logs, screenshots
):
    page = logged_in_page(olivia)
    modal = open_tab(page, project, failed_run_with_logs, "pipeline")
    expect(modal.locator("#view-stage-detail")).to_have_attribute("data-stage", "Transform")
    modal.locator(".dag-node[data-stage=SchemaGen] a").click()
    expect(modal.locator("#view-stage-detail")).to_have_attribute("data-stage", "SchemaGen")
    expect(page).to_have_url(re.compile(rf"view={failed_run_with_logs.pk}&tab=pipeline&stage=SchemaGen"))
    page.reload()
    expect(modal.locator("#view-stage-detail")).to_have_attribute("data-stage", "SchemaGen")
    screenshots("reloaded")
    modal.locator("[data-tab=overview]").click()  # another tab's URL says no stage
    expect(page).to_have_url(re.compile(rf"view={failed_run_with_logs.pk}&tab=overview$"))


def test_a_click_on_a_stage_wins_over_a_refresh_in_flight(
    logged_in_page, olivia, project, running_run_with_statistics, browser_errors
):
    browser_errors.expect("htmx:sendAbort")  # htmx logs the refresh it aborts for the click
    browser_errors.expect("htmx:afterRequest")
    page = logged_in_page(olivia)
    modal = open_tab(page, project, running_run_with_statistics, "pipeline")
    expect(modal.locator("#view-stage-detail")).to_have_attribute("data-stage", "Trainer")
    held, failed = [], []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.route(lambda url: "/view/pipeline/?stage=Trainer" in url, lambda route: held.append(route))  # it hangs
    deadline = POLL_MS
    while not held and deadline > 0:
        page.wait_for_timeout(100)
        deadline -= 100
    assert held, "the modal's refresh was not asked for"
    modal.locator(".dag-node[data-stage=Compile] a").click()
    expect(modal.locator("#view-stage-detail")).to_have_attribute("data-stage", "Compile")
    held[0].continue_()  # the old stage's answer arrives after the click's: too late to be shown
    page.wait_for_timeout(1_000)
    expect(modal.locator("#view-stage-detail")).to_have_attribute("data-stage", "Compile")
    assert any("/view/pipeline/?stage=Trainer" in url for url in failed)  # aborted, not just ignored


def test_at_a_phones_width_the_tabs_wrap_and_the_artifacts_stack_never_scrolling_sideways(
    logged_in_page, olivia, project, failed_run_with_logs, screenshots
):
    page = logged_in_page(olivia)
    page.set_viewport_size({"width": 390, "height": 844})
    modal = open_tab(page, project, failed_run_with_logs, "results")
    box = modal.locator("#view-artifacts .scroll")
    expect(modal.locator("#view-artifacts-table thead")).to_have_css("position", "absolute")
    assert box.evaluate("(e) => e.scrollWidth <= e.clientWidth + 1"), "the artifacts scroll sideways"
    expect(modal.locator("tr[data-artifact=ExampleGen] td[data-label=Path]")).to_have_css("display", "block")
    for tab in modal.locator(".view-tabs [role=tab]").all():  # every tab in sight, the open one (Results) too
        box_of = tab.bounding_box()
        assert box_of["x"] >= 0 and box_of["x"] + box_of["width"] <= 390, tab.inner_text()
    page.set_viewport_size({"width": 1280, "height": 844})
    expect(modal.locator("#view-artifacts-table thead")).not_to_have_css("position", "absolute")
    screenshots("artifacts")
