"""The New Training wizard in a headless Chromium: two steps in a <dialog>, the summaries, the live name check,
the estimate, refusals next to their inputs; promoting an experiment, editing a run, a new experiment."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from ml_platform.datasets.models import Dataset
from ml_platform.training.models import TrainingRun
from tests.control.runners.conftest import VERTEX_SETTINGS
from tests.helpers import copies

pytestmark = pytest.mark.browser


@pytest.fixture
def experiment(api, project, run_body):
    """A completed experiment of the purchases (copied from a queued one: never executed)."""
    body = {k: v for k, v in run_body.items() if k != "name"}
    queued = api.post(f"/api/projects/{project.id}/experiments/", {**body, "name": "bigger"})
    assert queued.status_code == 201, queued.content
    (done,) = copies(
        queued.json()["id"],
        1,
        status=TrainingRun.COMPLETED,
        blessed=True,
        final_metrics={"recall_at_100": 0.31, "examples_per_second": 20_000.0},
        blessing_reasons=["Recall@100 0.31 beats popularity 0.20 by more than 0.00"],
    )
    return done


def open_wizard(page, project, path="training"):
    page.goto(f"/projects/{project.id}/{path}/")
    page.locator("#new-run").click()
    dialog = page.locator("#wizard-dialog")
    expect(dialog.locator("form#wizard")).to_be_visible()
    return dialog


def choose_catalog(dialog, dataset, feature_config, model_config):
    dialog.locator("select[name=dataset_id]").select_option(str(dataset["id"]))
    dialog.locator("select[name=feature_config_id]").select_option(str(feature_config["id"]))
    dialog.locator("select[name=model_config_id]").select_option(str(model_config["id"]))


def test_it_starts_a_training_run_in_two_steps(
    logged_in_page, olivia, project, dataset, feature_config, retrieval, screenshots
):
    Dataset.objects.filter(pk=dataset["id"]).update(preview={"rows": 6, "summary": "6 rows | 3 users | 3 products"})
    page = logged_in_page(olivia)
    dialog = open_wizard(page, project)
    expect(dialog.locator("[data-step-number]")).to_have_text("1")
    choose_catalog(dialog, dataset, feature_config, retrieval)
    expect(dialog.locator("[data-summary=dataset]")).to_have_text("ℹ 6 rows | 3 users | 3 products")
    expect(dialog.locator("[data-summary=features]")).to_contain_text("buyer_id: ")
    screenshots("step-1")

    dialog.locator("[data-next]").click()
    expect(dialog.locator("[data-step-number]")).to_have_text("2")
    expect(dialog.locator("input[name=name]")).to_be_focused()
    dialog.locator("input[name=name]").fill("weekly-recs")
    expect(dialog.locator("[data-check=new]")).to_be_visible()
    dialog.locator("input[name='training_params.epochs']").fill("3")
    dialog.locator("input[name='training_params.batch_size']").fill("64")
    expect(dialog.locator("[data-estimate=basis]")).to_contain_text("No history yet")
    screenshots("step-2")

    dialog.locator("#wizard-submit").click()
    expect(page.locator(".toast")).to_have_text("weekly-recs #1 queued")
    expect(dialog).to_be_hidden()
    expect(page.locator(".run-card .run-name")).to_have_text(["weekly-recs #1"])
    run = TrainingRun.objects.get(name="weekly-recs")
    assert run.training_params["epochs"] == 3 and run.training_params["batch_size"] == 64
    assert run.dataset_id == dataset["id"] and run.status == TrainingRun.PENDING


def test_a_refusal_is_shown_next_to_its_input_and_nothing_is_made(
    logged_in_page, olivia, project, dataset, feature_config, retrieval
):
    page = logged_in_page(olivia)
    dialog = open_wizard(page, project)
    choose_catalog(dialog, dataset, feature_config, retrieval)
    dialog.locator("[data-next]").click()
    dialog.locator("input[name=name]").fill("recs")
    dialog.locator("input[name='training_params.epochs']").evaluate("input => { input.min = ''; }")
    dialog.locator("input[name='training_params.epochs']").fill("0")
    dialog.locator("#wizard-submit").click()
    expect(dialog.locator("[data-errors-for='training_params.epochs']")).to_contain_text("greater than or equal to 1")
    expect(dialog.locator("[data-step-number]")).to_have_text("2")
    assert not TrainingRun.objects.exists()

    dialog.locator("input[name='training_params.epochs']").fill("2")
    dialog.locator("[data-back]").click()
    dialog.locator("select[name=model_config_id]").select_option("")
    dialog.locator("[data-next]").click()
    dialog.locator("#wizard-submit").click()
    expect(dialog.locator("[data-errors-for=model_config_id]")).to_have_text("required (or give experiment_id)")
    expect(dialog.locator("[data-step-number]")).to_have_text("1")


def test_the_name_check_warns_when_the_model_exists(logged_in_page, olivia, project, pending_run):
    page = logged_in_page(olivia)
    dialog = open_wizard(page, project)
    dialog.locator("[data-next]").click()
    dialog.locator("input[name=name]").fill("recs")
    expect(dialog.locator("[data-check=exists]")).to_have_text(
        "'recs' exists (retrieval): this run trains its next version."
    )


def test_the_estimate_comes_from_earlier_runs(
    logged_in_page, olivia, project, dataset, feature_config, retrieval, pending_run
):
    Dataset.objects.filter(pk=dataset["id"]).update(preview={"rows": 90_000})
    copies(pending_run["id"], 1, status=TrainingRun.COMPLETED, final_metrics={"examples_per_second": 45_000.0})
    page = logged_in_page(olivia)
    dialog = open_wizard(page, project)
    choose_catalog(dialog, dataset, feature_config, retrieval)
    dialog.locator("[data-next]").click()
    dialog.locator("input[name='training_params.epochs']").fill("20")
    dialog.locator("input[name='training_params.epochs']").dispatch_event("change")
    expect(dialog.locator("[data-estimate=basis]")).to_contain_text("From 1 earlier retrieval run, ~45k examples/s")
    expect(dialog.locator("[data-estimate=duration]")).to_have_text("~40s")


def test_promote_opens_the_wizard_with_the_experiment_and_its_verdict(logged_in_page, olivia, project, experiment):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/experiments/")
    page.locator(f"#run-{experiment.pk} [data-action=promote]").click()
    dialog = page.locator("#wizard-dialog")
    expect(dialog.locator("select[name=experiment_id]")).to_have_value(str(experiment.pk))
    expect(dialog.locator("[data-summary=experiment]")).to_contain_text("recall_at_100 0.31")
    expect(dialog.locator("[data-summary=experiment] .badge")).to_have_text("Beats the baselines")
    expect(dialog.locator("select[name=dataset_id]")).to_be_disabled()
    dialog.locator("[data-next]").click()
    dialog.locator("input[name=name]").fill("promoted")
    dialog.locator("#wizard-submit").click()
    expect(page.locator(".toast")).to_contain_text("promoted #1 queued")
    run = TrainingRun.objects.get(name="promoted")
    assert run.source_experiment_id == experiment.pk and run.split_config["sample_percent"] == 100.0


def test_edit_opens_at_step_two_filled_in_and_saves(logged_in_page, olivia, project, pending_run, screenshots):
    (done,) = copies(pending_run["id"], 1, status=TrainingRun.COMPLETED, final_metrics={"examples_per_second": 9.0})
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/training/")
    page.locator(f"#run-{done.pk} [data-action=edit]").click()
    dialog = page.locator("#wizard-dialog")
    expect(dialog.locator("[data-step-number]")).to_have_text("2")
    expect(dialog.locator("input[name='training_params.epochs']")).to_have_value("2")
    expect(dialog.locator("#wizard-submit .when-idle")).to_have_text("Save")
    expect(dialog.locator("[data-estimate=basis]")).to_contain_text("From 1 earlier retrieval run")  # done's own
    dialog.locator("input[name='training_params.epochs']").fill("30")
    dialog.locator("#wizard-submit").click()
    expect(page.locator(".toast")).to_have_text(f"recs #{done.run_number} saved")
    done.refresh_from_db()
    assert done.training_params["epochs"] == 30


def test_a_new_experiment_is_started_from_the_experiments_page(
    logged_in_page, olivia, project, dataset, feature_config, retrieval
):
    page = logged_in_page(olivia)
    dialog = open_wizard(page, project, "experiments")
    choose_catalog(dialog, dataset, feature_config, retrieval)
    dialog.locator("[data-next]").click()
    dialog.locator("input[name='split_config.sample_percent']").fill("50")
    dialog.locator("input[name='training_params.epochs']").fill("1")
    dialog.locator("#wizard-submit").click()
    expect(page.locator(".toast")).to_have_text("Exp #1 queued")
    expect(page.locator(".run-card .run-name")).to_have_text(["Exp #1"])
    made = TrainingRun.objects.get(kind=TrainingRun.EXPERIMENT)
    assert made.split_config["sample_percent"] == 50.0


def test_the_gpu_types_follow_the_chosen_runner_with_the_reason_for_those_it_cannot_have(
    logged_in_page, olivia, project, dataset, feature_config, retrieval, settings, screenshots
):
    for name, value in VERTEX_SETTINGS.items():
        setattr(settings, name, value)
    page = logged_in_page(olivia)
    dialog = open_wizard(page, project)
    choose_catalog(dialog, dataset, feature_config, retrieval)
    dialog.locator("[data-next]").click()
    runner, gpu = dialog.locator("select[name=runner]"), dialog.locator("select[name='gpu_config.gpu_type']")
    expect(runner).to_have_value("local")
    expect(runner.locator("option[value=kubeflow]")).to_be_disabled()
    gpu.select_option("H100")  # every type locally: the machine's own GPUs
    hint = dialog.locator("[data-gpu-hint]")
    expect(hint).to_be_hidden()

    runner.select_option("vertex")
    expect(gpu.locator("option[value=H100]")).to_be_disabled()
    expect(gpu.locator("option[value=H100]")).to_have_text("H100 — unavailable")
    expect(gpu).to_have_value("")  # the chosen type is unavailable there: back to CPU
    expect(hint).to_have_text(
        "H100: not offered for training in europe-west4 (regions with H100: us-central1, us-west1)"
    )
    expect(gpu.locator("option[value=T4]")).to_be_enabled()
    screenshots("vertex")

    runner.select_option("local")
    expect(gpu.locator("option[value=H100]")).to_be_enabled()
    expect(hint).to_be_hidden()
