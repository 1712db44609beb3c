"""The project navigation bar and the Training page in a real headless Chromium: run cards, their actions,
filters, search and pages.

Runs are made by the API or copied in the ORM (``copies``) in the states a test needs; a run the worker
executes is in test_training_live.py.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from ml_pipeline.spec import STAGES
from ml_platform.training.models import TrainingRun
from tests.helpers import copies

pytestmark = pytest.mark.browser


def training_url(project) -> str:
    return f"/projects/{project.id}/training/"


def card(page, run_id: int):
    return page.locator(f"#run-{run_id}")


def query_of(page) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


@pytest.fixture
def finished_runs(pending_run):
    """The pending run (#1), a completed and blessed one (#2) and one that failed in Transform (#3)."""
    completed, failed = copies(
        pending_run["id"],
        1,
        status=TrainingRun.COMPLETED,
        blessed=True,
        final_metrics={"recall_at_100": 0.4213},
        stages={s: {"status": "completed"} for s in STAGES},
    ) + copies(
        pending_run["id"],
        1,
        status=TrainingRun.FAILED,
        error_message="vocabulary of <product_id> is empty",
        error_stage="Transform",
        stages={**{s: {"status": "completed"} for s in STAGES[:4]}, "Transform": {"status": "failed"}},
    )
    return {"pending": pending_run["id"], "completed": completed.pk, "failed": failed.pk}


def test_the_navigation_bar_shows_the_projects_sections_with_counts(logged_in_page, olivia, project, finished_runs):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/")
    nav = page.locator("#project-nav")
    expect(nav.locator("#nav-project")).to_have_text("b2b-recs")
    counts = nav.locator("a[data-section]").evaluate_all(
        "links => links.map(a => [a.dataset.section, a.querySelector('.count').textContent])"
    )
    assert counts == [["datasets", "1"], ["configs", "2"], ["experiments", "0"], ["training", "3"], ["models", "1"]]

    with page.expect_navigation():
        nav.locator("a[data-section=training]").click()
    assert urlsplit(page.url).path == training_url(project)
    expect(nav.locator("a[data-section=training]")).to_have_attribute("aria-current", "page")
    expect(page.locator(".breadcrumbs li")).to_have_text(["Projects", "b2b-recs", "Training runs"])
    expect(page.locator("#current-project")).to_have_text("b2b-recs")


def test_a_card_shows_its_run_its_configs_metrics_and_stage_bar(
    logged_in_page, olivia, project, finished_runs, screenshots
):
    page = logged_in_page(olivia)
    page.goto(training_url(project))
    expect(page.locator(".run-card")).to_have_count(3)

    completed = card(page, finished_runs["completed"])
    expect(completed.locator(".run-name")).to_have_text("recs #2")
    expect(completed.locator("[data-role=status]")).to_have_text("Completed")
    expect(completed.locator(".run-config a")).to_have_text(["purchases", "standard", "two-tower"])
    expect(completed.locator("[data-metric=recall_at_100] b")).to_have_text("0.4213")
    expect(completed.locator("[data-metric=recall_at_100] .split")).to_have_text("test")
    expect(completed.locator("[data-role=blessed]")).to_have_text("Blessed")
    assert completed.locator(".stage").evaluate_all("s => s.map(e => e.dataset.status)") == ["completed"] * 8
    expect(completed.locator(".stage-name")).to_have_text(
        ["Compile", "Examples", "Stats", "Schema", "Transform", "Train", "Evaluator", "Pusher"]
    )
    assert completed.locator("time").get_attribute("title").startswith("20")  # the exact time on hover

    failed = card(page, finished_runs["failed"])
    expect(failed.locator("[data-role=error]")).to_contain_text("vocabulary of <product_id> is empty")
    expect(failed.locator("[data-role=error-stage]")).to_have_text("Transform")
    expect(failed.locator(".stage[data-stage=Transform]")).to_have_class("stage stage-failed")

    # Each card offers what its run accepts now, as the API would.
    def actions(run_id):  # the Schedule slot is the schedules issue's
        found = card(page, run_id).locator("[data-action]").evaluate_all("b => b.map(e => e.dataset.action)")
        return [action for action in found if action != "schedule"]

    assert actions(finished_runs["pending"]) == ["view", "cancel"]
    assert actions(finished_runs["completed"]) == ["view", "rerun", "edit", "delete"]
    assert actions(finished_runs["failed"]) == ["view", "rerun", "edit", "delete"]
    screenshots("training")


def test_cancel_asks_first_and_turns_the_card_cancelled(logged_in_page, olivia, project, finished_runs):
    page = logged_in_page(olivia)
    page.goto(training_url(project))
    pending = card(page, finished_runs["pending"])

    pending.locator("[data-action=cancel]").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#confirm-dialog-text")).to_have_text("Cancel recs #1?")
    dialog.get_by_role("button", name="Keep it").click()
    expect(dialog).to_be_hidden()
    assert TrainingRun.objects.get(pk=finished_runs["pending"]).status == TrainingRun.PENDING

    pending.locator("[data-action=cancel]").click()
    dialog.locator("#confirm-dialog-ok").click()
    expect(pending.locator("[data-role=status]")).to_have_text("Cancelled")
    expect(page.locator(".toast")).to_have_text("recs #1 cancelled")
    assert pending.locator(".stage").evaluate_all("s => s.map(e => e.dataset.status)") == ["cancelled"] * 8
    expect(page.locator("#run-list")).to_have_attribute("data-polling", "false")  # nothing left running


def test_a_refused_action_shows_the_apis_message(logged_in_page, olivia, project, finished_runs, browser_errors):
    browser_errors.expect("409")  # the browser logs the refusal itself
    page = logged_in_page(olivia)
    page.goto(training_url(project))
    TrainingRun.objects.filter(pk=finished_runs["pending"]).update(status=TrainingRun.COMPLETED)  # meanwhile
    card(page, finished_runs["pending"]).locator("[data-action=cancel]").click()
    page.locator("#confirm-dialog-ok").click()
    expect(page.locator(".toast.error")).to_have_text("Run is already completed")
    expect(page.locator(".flash.error")).to_have_count(0)


def test_rerun_and_delete_change_the_list(logged_in_page, olivia, project, finished_runs):
    page = logged_in_page(olivia)
    page.goto(training_url(project))
    card(page, finished_runs["failed"]).locator("[data-action=rerun]").click()
    dialog = page.locator("#wizard-dialog")
    expect(dialog.locator("input[name=mode][value=as_it_was]")).to_be_checked()
    dialog.locator("#rerun-submit").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(".toast")).to_have_text("recs #4 queued (a rerun of recs #3)")
    expect(page.locator(".run-card").first.locator(".run-name")).to_have_text("recs #4")
    expect(page.locator("#run-count")).to_have_text("4 runs")

    card(page, finished_runs["completed"]).locator("[data-action=delete]").click()
    page.locator("#confirm-dialog-ok").click()
    expect(card(page, finished_runs["completed"])).to_have_count(0)
    expect(page.locator("#run-count")).to_have_text("3 runs")
    assert not TrainingRun.objects.filter(pk=finished_runs["completed"]).exists()

    # The dialog takes another form after the rerun's (the Edit wizard, at step 2).
    card(page, finished_runs["failed"]).locator("[data-action=edit]").click()
    expect(page.locator("#wizard-dialog #wizard-submit .when-idle")).to_have_text("Save")
    expect(page.locator("#wizard-dialog .dialog-body form#wizard")).to_be_visible()


def test_filters_search_and_pages_change_the_list_and_the_url(logged_in_page, olivia, project, pending_run):
    copies(pending_run["id"], 11, status=TrainingRun.FAILED)
    copies(pending_run["id"], 1, name="churn", description="who stops buying", status=TrainingRun.COMPLETED)
    page = logged_in_page(olivia)
    page.goto(training_url(project))
    expect(page.locator("#run-count")).to_have_text("13 runs")
    expect(page.locator(".run-card")).to_have_count(10)
    expect(page.locator("#page-of")).to_have_text("Page 1 of 2")

    page.locator(".pagination a[rel=next]").click()
    expect(page.locator("#page-of")).to_have_text("Page 2 of 2")
    expect(page.locator(".run-card")).to_have_count(3)
    assert query_of(page)["page"] == "2"

    page.select_option("#run-filters select[name=status]", "failed")
    expect(page.locator("#run-count")).to_have_text("11 runs")
    assert query_of(page) == {"status": "failed"}

    page.select_option("#run-filters select[name=status]", "")
    page.fill("#run-filters input[name=search]", "stops")
    expect(page.locator("#run-count")).to_have_text("1 run")
    expect(page.locator(".run-name")).to_have_text(["churn #13"])
    assert query_of(page) == {"search": "stops"}

    page.reload()  # the state is in the URL
    expect(page.locator(".run-name")).to_have_text(["churn #13"])
    expect(page.locator("#run-filters input[name=search]")).to_have_value("stops")


def test_the_runs_page_shows_the_view_modals_sections(logged_in_page, olivia, project, finished_runs, screenshots):
    """The page a View link names (the modal's no-JS and new-tab fallback): its header and every tab."""
    page = logged_in_page(olivia)
    page.goto(f"/training/runs/{finished_runs['completed']}/")
    expect(page.locator("#view-modal-title")).to_have_text("recs #2")
    expect(page.locator("#tab-overview [data-metric=recall_at_100] b")).to_have_text("0.4213")
    expect(page.locator("#view-registry")).to_contain_text("ready for the registry")
    expect(page.locator(".breadcrumbs li")).to_have_text(["Projects", "b2b-recs", "Training runs", "recs #2"])
    screenshots("run")


def test_an_outsider_gets_404_for_the_page_and_the_actions(
    logged_in_page, oscar, project, finished_runs, browser_errors
):
    browser_errors.expect("404")
    page = logged_in_page(oscar)
    assert page.goto(training_url(project)).status == 404
    assert page.goto(f"/training/runs/{finished_runs['completed']}/").status == 404
    refused = page.request.post(
        f"/training/runs/{finished_runs['pending']}/cancel/",
        headers={"X-CSRFToken": page.context.cookies()[0]["value"] if page.context.cookies() else ""},
    )
    assert refused.status in (403, 404)
    assert TrainingRun.objects.get(pk=finished_runs["pending"]).status == TrainingRun.PENDING


def test_two_checked_cards_are_compared_side_by_side(logged_in_page, olivia, project, pending_run, screenshots):
    from ml_platform.training.models import TrainingMetricsHistory

    runs = copies(pending_run["id"], 1, status=TrainingRun.COMPLETED, final_metrics={"recall_at_100": 0.3}) + copies(
        pending_run["id"],
        1,
        status=TrainingRun.COMPLETED,
        final_metrics={"recall_at_100": 0.4},
        training_params={"epochs": 3, "batch_size": 64},
    )
    for run in runs:
        for epoch in (1, 2):
            TrainingMetricsHistory.objects.create(training_run=run, epoch=epoch, loss=1.0 / epoch)
    page = logged_in_page(olivia)
    page.goto(training_url(project))
    for run in runs:
        card(page, run.pk).locator("input[name=ids]").check()
    with page.expect_navigation():
        page.locator("#compare-selected").click()
    assert urlsplit(page.url).path == "/training/compare/"
    best = page.locator("#compare-metrics tr[data-metric=recall_at_100] td.best")
    expect(best).to_contain_text("0.4")
    expect(page.locator("#compare-config tr[data-field='training_params.epochs']")).to_have_class("differs")
    expect(page.locator("#compare-config tr[data-field='training_params.batch_size']")).not_to_have_class("differs")
    expect(page.locator("#compare-curves canvas[data-metric=loss]")).to_be_visible()
    screenshots("compare")


def test_compare_says_why_with_fewer_than_two_runs(logged_in_page, olivia, project, pending_run, browser_errors):
    browser_errors.expect("422")
    page = logged_in_page(olivia)
    assert page.goto(f"/training/compare/?ids={pending_run['id']}").status == 422
    expect(page.locator("#compare-problem")).to_contain_text("ids: give between 2 and 10 different runs")


def test_an_objects_page_marks_its_section_in_the_bar(logged_in_page, olivia, project, dataset, feature_config):
    page = logged_in_page(olivia)
    page.goto(f"/datasets/{dataset['id']}/")
    expect(page.locator("#project-nav a.current")).to_have_attribute("data-section", "datasets")
    page.goto(f"/feature-configs/{feature_config['id']}/")
    expect(page.locator("#project-nav a.current")).to_have_attribute("data-section", "configs")
