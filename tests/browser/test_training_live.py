"""Runs the real worker executes, watched on the pages in a headless Chromium: a card's stage bar fills in
without a reload and the page stops asking once the run has finished; an experiment made on its page is
promoted through the wizard; a run is pushed, rerun from the Trainer (the data stages cached), deployed to
the tests' own serving endpoint, tried, rolled back and undeployed; a running run is cancelled.

The worker is stepped in the test's thread (``drive``) while the page polls the live server by itself; the
data is tiny (3,000 generated purchases, one epoch) so the whole story takes seconds of training.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from playwright.sync_api import expect

from ml_platform.training.models import TrainingRun
from ml_platform.training.worker import Worker
from tests.helpers import carry_out_deployments, demo_catalog, drive, local_serving, queue_run, serving_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SLOW_MS = 120_000  # the worker's part of a deploy waits for the endpoint to load the model


@pytest.fixture
def catalog(project, olivia):
    folder = Path(settings.DATASET_ALLOWED_ROOTS[0]) / "training-live" / str(project.pk)
    return demo_catalog(project, olivia, folder, rows=3_000)


@pytest.fixture
def worker():
    worker = Worker(max_concurrent=1)
    yield worker
    worker.shutdown()


def stage_statuses(card) -> list[str]:
    return card.locator(".stage").evaluate_all("stages => stages.map(s => s.dataset.status)")


def test_a_run_is_watched_pushed_rerun_from_the_trainer_deployed_tried_rolled_back_and_undeployed(
    logged_in_page, olivia, project, catalog, worker, screenshots
):
    run = queue_run(project, olivia, catalog, epochs=1)
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/training/")
    card = page.locator(f"#run-{run.pk}")
    expect(card.locator("[data-role=status]")).to_have_text("Pending")
    assert stage_statuses(card) == ["pending"] * 8
    expect(page.locator("#run-list")).to_have_attribute("data-polling", "true")

    drive(worker, run, lambda r: r.is_terminal)
    assert run.status == TrainingRun.COMPLETED, (run.error_stage, run.error_message)

    # No reload: the list's poll brought the finished card, and asks no more.
    expect(card.locator("[data-role=status]")).to_have_text("Completed", timeout=15_000)
    assert stage_statuses(card) == ["completed"] * 8
    expect(page.locator("#run-list")).to_have_attribute("data-polling", "false")
    # the split the Evaluator held out (test, or eval where the split left no test rows)
    run.refresh_from_db()
    expect(card.locator("[data-metric=recall_at_100] .split")).to_have_text(run.final_metrics["holdout"])
    expect(card.locator("[data-role=blessed]")).to_have_text("Blessed")

    card.locator("[data-action=push]").click()
    expect(page.locator(".toast")).to_have_text(f"recs #{run.run_number} registered as version 1", timeout=30_000)
    expect(card.locator("[data-role=registered]")).to_have_text("v1")
    expect(card.locator("[data-action=push]")).to_have_count(0)

    # Rerun from the Trainer with more epochs: the plan says the data stages come from the cache.
    card.locator("[data-action=rerun]").click()
    dialog = page.locator("#wizard-dialog")
    dialog.locator("select[name=from_stage]").select_option("Trainer")
    expect(dialog.locator("input[name=mode][value=edited]")).to_be_checked()
    planned = dialog.locator("#rerun-plan li")
    expect(planned).to_have_count(8)
    assert planned.evaluate_all("s => s.map(e => e.dataset.plan)") == ["reuse"] * 5 + ["run"] * 3
    dialog.locator("input[name='training_params.epochs']").fill("2")
    screenshots("rerun")
    dialog.locator("#rerun-submit").click()
    expect(page.locator(".toast").last).to_have_text(
        f"recs #{run.run_number + 1} queued (a rerun of recs #{run.run_number})"
    )
    rerun = TrainingRun.objects.get(rerun_of=run)
    assert rerun.training_params["epochs"] == 2 and rerun.from_stage == "Trainer"
    drive(worker, rerun, lambda r: r.is_terminal)
    assert rerun.status == TrainingRun.COMPLETED, (rerun.error_stage, rerun.error_message)
    second = page.locator(f"#run-{rerun.pk}")
    expect(second.locator("[data-role=status]")).to_have_text("Completed", timeout=15_000)
    assert stage_statuses(second) == ["completed"] + ["cached"] * 4 + ["completed"] * 3  # ExampleGen…Transform
    second.locator("[data-action=push]").click()
    expect(second.locator("[data-role=registered]")).to_have_text("v2", timeout=30_000)
    screenshots("runs")

    with override_settings(**serving_settings()), local_serving():
        with page.expect_navigation():
            page.locator("#project-nav a[data-section=models]").click()
        expect(page.locator("#models tr[data-model]")).to_have_count(1)
        page.locator("[data-action=versions]").click()
        drawer = page.locator(".model-drawer")
        expect(drawer.locator("tr[data-version]")).to_have_count(2)

        drawer.locator("tr[data-version='1'] [data-action=deploy]").click()
        expect(page.locator(".toast").last).to_have_text("Deploying version 1 of recs: it serves once loaded")
        carried_out(drawer, "loading")
        expect(drawer.locator("[data-role=deployed-version]")).to_have_text("1", timeout=SLOW_MS)
        expect(page.locator("#models [data-role=deployment]")).to_contain_text("v1 deployed")  # the table followed

        drawer.locator("input[name=buyer_id]").fill(a_buyer(catalog))
        drawer.locator(".try-it button[type=submit]").click()
        expect(drawer.locator(".recommendations li").first).to_be_visible(timeout=30_000)
        assert drawer.locator(".recommendations li").count() == 10
        screenshots("models")

        drawer.locator("tr[data-version='2'] [data-action=deploy]").click()
        carried_out(drawer, "loading")
        expect(drawer.locator("[data-role=deployed-version]")).to_have_text("2", timeout=SLOW_MS)
        drawer.locator("[data-action=rollback]").click()
        page.locator("#confirm-dialog-ok").click()
        carried_out(drawer, "loading")
        expect(drawer.locator("[data-role=deployed-version]")).to_have_text("1", timeout=SLOW_MS)
        expect(drawer.locator(".deploy-history li[data-event=rollback]")).to_have_count(1)

        drawer.locator("[data-action=undeploy]").click()
        page.locator("#confirm-dialog-ok").click()
        carried_out(drawer, "stopping")
        expect(drawer.locator("[data-role=serving]")).to_contain_text("Not deployed", timeout=SLOW_MS)


def carried_out(drawer, state: str) -> None:
    """The drawer shows the request pending; then the worker's part, here (the drawer's poll shows the end)."""
    expect(drawer.locator(f"[data-role=deploy-state][data-state={state}]")).to_be_visible(timeout=30_000)
    carry_out_deployments()


def a_buyer(catalog) -> str:
    """A buyer of the run's data (the dataset's file)."""
    import pyarrow.parquet as pq

    dataset = catalog[0]
    return str(pq.read_table(dataset.source["path"], columns=["buyer_id"]).column("buyer_id")[0])


def test_a_running_run_shows_its_epoch_and_turns_cancelled_when_cancelled(
    logged_in_page, olivia, project, catalog, worker
):
    run = queue_run(project, olivia, catalog, epochs=200)
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/training/")
    card = page.locator(f"#run-{run.pk}")
    drive(worker, run, lambda r: r.current_stage == "Trainer" and (r.current_epoch or 0) >= 1)
    expect(card.locator(".stage[data-stage=Trainer] .epoch")).to_contain_text("/200", timeout=15_000)
    expect(card.locator(".stage[data-stage=Trainer]")).to_have_attribute("data-status", "running")

    card.locator("[data-action=cancel]").click()
    page.locator("#confirm-dialog-ok").click()
    expect(page.locator(".toast")).to_have_text(f"Cancel requested for recs #{run.run_number}")
    drive(worker, run, lambda r: r.is_terminal)
    assert run.status == TrainingRun.CANCELLED
    expect(card.locator("[data-role=status]")).to_have_text("Cancelled", timeout=15_000)
    expect(page.locator("#run-list")).to_have_attribute("data-polling", "false")


def test_an_experiment_made_on_its_page_runs_and_is_promoted_through_the_wizard(
    logged_in_page, olivia, project, catalog, worker
):
    dataset, features, model = catalog
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/experiments/")
    page.locator("#new-run").click()
    dialog = page.locator("#wizard-dialog")
    dialog.locator("select[name=dataset_id]").select_option(str(dataset.pk))
    dialog.locator("select[name=feature_config_id]").select_option(str(features.pk))
    dialog.locator("select[name=model_config_id]").select_option(str(model.pk))
    dialog.locator("[data-next]").click()
    dialog.locator("input[name='split_config.sample_percent']").fill("50")
    dialog.locator("select[name='split_config.strategy']").select_option("time_holdout")
    dialog.locator("input[name='split_config.holdout_days']").fill("45")
    dialog.locator("input[name='training_params.epochs']").fill("1")
    dialog.locator("#wizard-submit").click()
    expect(page.locator(".toast")).to_have_text("Exp #1 queued")
    experiment = TrainingRun.objects.get(project=project, kind=TrainingRun.EXPERIMENT)
    card = page.locator(f"#run-{experiment.pk}")
    expect(card).to_be_visible()  # the list brought it after the toast
    assert stage_statuses(card) == ["pending"] * 7 + ["skipped"]  # an experiment has no Pusher

    drive(worker, experiment, lambda r: r.is_terminal)
    assert experiment.status == TrainingRun.COMPLETED, (experiment.error_stage, experiment.error_message)
    expect(card.locator("[data-role=status]")).to_have_text("Completed", timeout=15_000)
    assert stage_statuses(card) == ["completed"] * 7 + ["skipped"]
    expect(card.locator("[data-role=verdict]")).to_be_visible()

    card.locator("[data-action=promote]").click()
    expect(dialog.locator("[data-summary=experiment]")).to_contain_text("Exp #1")
    dialog.locator("[data-next]").click()
    dialog.locator("input[name=name]").fill("promoted")
    dialog.locator("#wizard-submit").click()
    expect(page.locator(".toast").last).to_contain_text("promoted #1 queued")
    run = TrainingRun.objects.get(project=project, name="promoted")
    assert run.source_experiment_id == experiment.pk and run.split_config["sample_percent"] == 100.0

    page.goto(f"/projects/{project.id}/training/")
    drive(worker, run, lambda r: r.is_terminal)
    assert run.status in (TrainingRun.COMPLETED, TrainingRun.NOT_BLESSED), (run.error_stage, run.error_message)
    expect(page.locator(f"#run-{run.pk} [data-role=status]")).not_to_have_text("Pending", timeout=15_000)
    expect(page.locator("#run-list")).to_have_attribute("data-polling", "false", timeout=15_000)
