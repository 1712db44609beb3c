"""The view modal in a real headless Chromium: opened from a run's card, deep-linked by its URL (a reload
opens the same tab, the back button closes it), its header's status, its Overview (results beside the
baseline, the blessing banner, filter chips, registry states), its Training tab refreshing while the run
goes on (the Trainer's progress line, the epoch table and the Chart.js loss curve gain an epoch without a
reload) and stopping once it has ended; an experiment's Promote. The Pipeline tab is test_view_modal_pipeline.py's.

Runs are copied in the ORM in the states a test needs (``copies``); the live run is in test_training_live.py.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from ml_pipeline.spec import STAGES
from ml_platform.training.models import TrainingMetricsHistory, TrainingRun
from tests.helpers import copies

pytestmark = pytest.mark.browser
BLESSED_REASONS = ["Recall@100 0.4213 > popularity 0.2100"]


def epoch(run, number: int, loss: float) -> TrainingMetricsHistory:
    """An epoch's row as the Trainer reports it: losses, recall, weight statistics and histograms."""
    histogram = {"counts": [1, 3 + number, 5, 2], "edges": [-1.0, -0.5, 0.0, 0.5, 1.0]}
    return TrainingMetricsHistory.objects.create(
        training_run=run,
        epoch=number,
        loss=loss,
        val_loss=loss + 0.1,
        recall_at_100=0.1 * number,
        metrics={"buyer_tower_weight_l1": 10.0 + number, "buyer_tower_weight_l2": 2.0 + number},
        histograms={"weights": {"buyer_tower": histogram, "product_tower": histogram}},
    )


def query_of(page) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


@pytest.fixture
def runs(pending_run):
    """A completed blessed run (R@100 0.4213 beside popularity 0.21), a running one at epoch 1 of 3, one
    failed in Transform with a traceback, and a completed experiment."""
    completed, running, failed = (
        copies(
            pending_run["id"],
            1,
            status=TrainingRun.COMPLETED,
            blessed=True,
            blessing_reasons=BLESSED_REASONS,
            final_metrics={"recall_at_100": 0.4213, "popularity_recall_at_100": 0.21},
            stages={s: {"status": "completed"} for s in STAGES},
        )
        + copies(
            pending_run["id"],
            1,
            status=TrainingRun.RUNNING,
            current_stage="Trainer",
            current_epoch=1,
            total_epochs=3,
            stages={**{s: {"status": "completed"} for s in STAGES[:5]}, "Trainer": {"status": "running"}},
        )
        + copies(
            pending_run["id"],
            1,
            status=TrainingRun.FAILED,
            error_message="vocabulary of product_id is empty",
            error_stage="Transform",
            error_traceback="Traceback (most recent call last):\n  ValueError: empty vocabulary",
            stages={**{s: {"status": "completed"} for s in STAGES[:4]}, "Transform": {"status": "failed"}},
        )
    )
    epoch(running, 1, 0.9)
    return {"completed": completed, "running": running, "failed": failed}


def loss_points(page, at_least: int = 1) -> int:
    """The points of the loss chart's first line, read from its canvas once it has drawn ``at_least``."""
    handle = page.wait_for_function(
        """n => { const c = document.querySelector("#view-modal canvas[data-chart=loss]");
                  const d = c && c.chart && c.chart.data.datasets[0];
                  return d && d.data.length >= n ? d.data.length : false; }""",
        arg=at_least,
    )
    return handle.json_value()


def open_from_card(page, project, run):
    page.goto(f"/projects/{project.id}/training/")
    modal = page.locator("#view-modal")
    expect(modal).to_have_attribute("data-ready", "true")
    page.locator(f"#run-{run.pk} [data-action=view]").click()
    expect(modal).to_be_visible()
    expect(modal.locator("#view-modal-title")).to_have_text(str(run))
    return modal


def test_view_opens_the_modal_with_the_url_naming_the_run_and_tab(logged_in_page, olivia, project, runs, screenshots):
    page = logged_in_page(olivia)
    run = runs["completed"]
    modal = open_from_card(page, project, run)
    assert query_of(page) == {"view": str(run.pk), "tab": "overview"}
    expect(modal.locator("[data-role=status]")).to_contain_text("Completed")
    expect(modal.locator("[data-metric=recall_at_100] b")).to_have_text("0.4213")
    expect(modal.locator("[data-metric=recall_at_100] .split")).to_have_text("eval")
    expect(modal.locator("[data-metric=recall_at_100] [data-role=baseline]")).to_have_text("popularity 0.21")
    expect(modal.locator("#blessing-banner")).to_contain_text("Passed evaluation")
    expect(modal.locator("#blessing-banner li")).to_have_text(BLESSED_REASONS)
    expect(modal.locator("#view-registry")).to_have_attribute("data-state", "not_registered")
    expect(modal.locator("#view-features .tensor-bar .slice").first).to_be_visible()
    screenshots("overview")

    modal.locator("[data-tab=pipeline]").click()
    assert query_of(page)["tab"] == "pipeline"
    expect(modal.locator("#view-pipeline .dag-node")).to_have_count(8)
    page.reload()  # the URL opens the same run and tab
    expect(page.locator("#view-modal [data-tab=pipeline]")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#view-modal #view-pipeline .dag-node[data-status=completed]")).to_have_count(8)


def test_back_and_escape_close_the_modal_and_focus_returns_to_the_card(logged_in_page, olivia, project, runs):
    page = logged_in_page(olivia)
    run = runs["completed"]
    modal = open_from_card(page, project, run)
    page.go_back()
    expect(modal).to_be_hidden()
    expect(page).to_have_url(re.compile(r"/training/$"))

    view = page.locator(f"#run-{run.pk} [data-action=view]")
    view.click()
    expect(modal).to_be_visible()
    page.keyboard.press("Escape")
    expect(modal).to_be_hidden()
    expect(page).to_have_url(re.compile(r"/training/$"))  # closing went back
    expect(view).to_be_focused()


def test_a_running_runs_progress_refreshes_until_it_ends(logged_in_page, olivia, project, runs, screenshots):
    page = logged_in_page(olivia)
    run = runs["running"]
    modal = open_from_card(page, project, run)
    expect(modal.locator("[data-action=cancel]")).to_be_visible()  # the card's rules: a running run is cancelled
    expect(modal.locator("[data-action=delete]")).to_have_count(0)
    modal.locator("[data-tab=training]").click()
    trainer = modal.locator("#view-progress .stage-line[data-stage=Trainer] [data-role=summary]")
    expect(trainer).to_have_text("Epoch 1/3 (Loss: 0.9)")
    expect(modal.locator("#view-epoch-table tbody tr")).to_have_count(1)
    expect(modal.locator("#view-epoch-table tr.current")).to_have_attribute("data-epoch", "1")
    assert loss_points(page) == 1
    expect(modal.locator("#view-ridgeline path.ridge")).to_have_count(1)
    screenshots("progress")

    epoch(run, 2, 0.7)
    TrainingRun.objects.filter(pk=run.pk).update(current_epoch=2)
    expect(modal.locator("[data-role=current-epoch]")).to_have_text("Epoch 2/3", timeout=8_000)
    expect(trainer).to_have_text("Epoch 2/3 (Loss: 0.7)")  # the Trainer's line, without a reload
    expect(modal.locator("#view-epoch-table tr.current")).to_have_attribute("data-epoch", "2")
    assert loss_points(page, 2) == 2
    expect(modal.locator("#view-ridgeline path.ridge")).to_have_count(2)  # one per finished epoch
    modal.locator("#view-weights").scroll_into_view_if_needed()
    screenshots("weights")
    expect(modal).to_have_attribute("data-polling", "true")

    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.COMPLETED, stages={s: {"status": "completed"} for s in STAGES}
    )
    expect(modal.locator("[data-role=status]")).to_contain_text("Completed", timeout=8_000)
    expect(modal).to_have_attribute("data-polling", "false")


def test_every_tab_renders_and_the_run_page_shows_them_all(logged_in_page, olivia, project, runs):
    page = logged_in_page(olivia)
    run = runs["completed"]
    modal = open_from_card(page, project, run)
    for tab in ("pipeline", "training", "insights", "results", "config", "overview"):
        modal.locator(f"[data-tab={tab}]").click()
        expect(modal.locator(f"[data-panel={tab}] [data-tab-body={tab}]")).to_be_visible()
    page.goto(f"/training/runs/{run.pk}/")  # the no-JS fallback: the same partials
    for tab in ("overview", "pipeline", "training", "insights", "results", "config"):
        expect(page.locator(f"#tab-{tab} [data-tab-body={tab}]")).to_be_visible()


def test_an_experiment_is_promoted_from_its_overview(logged_in_page, olivia, project, pending_run):
    (experiment,) = copies(
        pending_run["id"],
        1,
        kind=TrainingRun.EXPERIMENT,
        name="",
        status=TrainingRun.COMPLETED,
        blessed=True,
        final_metrics={"recall_at_100": 0.33},
        stages={s: {"status": "completed"} for s in STAGES[:7]},
    )
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/experiments/")
    modal = page.locator("#view-modal")
    expect(modal).to_have_attribute("data-ready", "true")
    page.locator(f"#run-{experiment.pk} [data-action=view]").click()
    expect(modal).to_have_attribute("data-mode", "experiment")
    expect(modal.locator("#view-registry")).to_have_count(0)  # an experiment is never registered
    expect(modal.locator("#blessing-banner")).to_contain_text("Beats the baselines")
    modal.locator("#view-promote [data-action=promote]").click()
    expect(page.locator("#wizard-dialog [data-summary=experiment]")).to_contain_text(str(experiment))


@pytest.mark.parametrize(
    "status", ["pending", "scheduled", "submitting", "running", "completed", "failed", "cancelled", "not_blessed"]
)
def test_the_header_names_every_status_with_its_icon(logged_in_page, olivia, project, pending_run, status):
    (run,) = copies(pending_run["id"], 1, status=status)
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/training/?view={run.pk}&tab=overview")  # a shared link opens it
    header = page.locator("#view-modal #view-modal-header")
    expect(header).to_have_attribute("data-status", status)
    expect(header.locator(f".status-icon.status-{status}")).not_to_have_text("")
    terminal = status in TrainingRun.TERMINAL
    expect(header).to_have_attribute("data-terminal", "true" if terminal else "false")
    expect(header.locator("[data-action=cancel]")).to_have_count(0 if terminal else 1)


def test_results_show_the_change_against_the_source_experiment(logged_in_page, olivia, project, pending_run, runs):
    (experiment,) = copies(
        pending_run["id"],
        1,
        kind=TrainingRun.EXPERIMENT,
        status=TrainingRun.COMPLETED,
        final_metrics={"recall_at_100": 0.40, "rmse": 1.0},
    )
    promoted = runs["completed"]
    TrainingRun.objects.filter(pk=promoted.pk).update(
        source_experiment=experiment, final_metrics={"recall_at_100": 0.42, "rmse": 1.1}
    )
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/training/?view={promoted.pk}&tab=results")
    against = page.locator("#view-modal #view-against")
    expect(against.locator("tr[data-metric=recall_at_100] [data-role=delta]")).to_have_text("↑ 5.0%")
    expect(against.locator("tr[data-metric=recall_at_100] [data-role=delta]")).to_have_class("num delta good-text")
    expect(against.locator("tr[data-metric=rmse] [data-role=delta]")).to_have_class("num delta bad-text")  # lower wins
    against.locator("h3 a").click()  # the experiment, in the same modal
    expect(page.locator("#view-modal #view-modal-title")).to_have_text(str(experiment))


@pytest.mark.parametrize("model_type", ["ranking", "multitask"])
def test_every_tab_renders_for_a_rating_model_and_a_cached_stage_names_its_run(
    logged_in_page, olivia, project, pending_run, model_type
):
    (run,) = copies(
        pending_run["id"],
        1,
        model_type=model_type,
        status=TrainingRun.COMPLETED,
        blessed=True,
        final_metrics={"rmse": 0.91, "mae": 0.7, "mean_baseline_rmse": 1.2, "recall_at_100": 0.3},
        stages={**{s: {"status": "completed"} for s in STAGES}, "ExampleGen": {"status": "cached"}},
        artifacts={"ExampleGen": {"uri": "/nowhere/ExampleGen", "producer": "ExampleGen", "run": "recs-1"}},
    )
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/training/?view={run.pk}&tab=overview")
    modal = page.locator("#view-modal")
    expect(modal.locator("[data-metric=rmse] [data-role=baseline]")).to_have_text("mean 1.2")
    expect(modal.locator("[data-metric=recall_at_100]")).to_have_count(1 if model_type == "multitask" else 0)
    for tab in ("pipeline", "training", "insights", "results", "config"):
        modal.locator(f"[data-tab={tab}]").click()
        expect(modal.locator(f"[data-panel={tab}] [data-tab-body={tab}]")).to_be_visible()
    modal.locator("[data-tab=training]").click()
    expect(modal.locator("canvas[data-chart=rating]")).to_have_count(1)
    expect(modal.locator(".stage-line[data-stage=ExampleGen] [data-role=cached-from]")).to_have_text(
        "reused from recs-1"
    )
