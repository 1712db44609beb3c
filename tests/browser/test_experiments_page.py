"""The Experiments page in a headless Chromium: Best Experiments (a KPI row per model type, the selected one's
top configurations, one dataset at a time) and the experiment cards."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from ml_platform.training.models import TrainingRun
from tests.helpers import copies

pytestmark = pytest.mark.browser


@pytest.fixture
def experiments(api, project, run_body):
    """Three completed retrieval experiments (R@100 0.2, 0.4, 0.3) and a ranking one (RMSE 0.9)."""
    body = {k: v for k, v in run_body.items() if k != "name"}
    queued = api.post(f"/api/projects/{project.id}/experiments/", body)
    assert queued.status_code == 201, queued.content
    made = []
    for recall in (0.2, 0.4, 0.3):
        made += copies(
            queued.json()["id"],
            1,
            status=TrainingRun.COMPLETED,
            final_metrics={"eval_recall_at_5": recall / 4, "eval_recall_at_100": recall, "loss": 1.5},
        )
    made += copies(
        queued.json()["id"], 1, status=TrainingRun.COMPLETED, model_type="ranking", final_metrics={"eval_rmse": 0.9}
    )
    return made


def test_best_experiments_rank_per_model_type(logged_in_page, olivia, project, experiments, screenshots):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/experiments/")
    box = page.locator("#best-experiments")
    retrieval = box.locator(".kpi-row[data-model-type=retrieval]")
    expect(retrieval).to_have_attribute("aria-selected", "true")  # the default
    expect(retrieval.locator("[data-kpi=count]")).to_have_text("4")  # with the queued one
    expect(retrieval.locator("[data-kpi=recall_at_100] b")).to_have_text("0.4")
    expect(retrieval.locator("[data-kpi=recall_at_100] .split")).to_have_text("eval")
    ranks = box.locator("#top-configurations tbody tr").evaluate_all("rows => rows.map(r => r.children[8].textContent)")
    assert ranks == ["0.4", "0.3", "0.2"]
    screenshots("experiments")

    box.locator(".kpi-row[data-model-type=ranking]").click()
    ranking = page.locator("#best-experiments .kpi-row[data-model-type=ranking]")
    expect(ranking).to_have_attribute("aria-selected", "true")
    expect(ranking.locator("[data-kpi=rmse] b")).to_have_text("0.9")
    expect(page.locator("#top-configurations tbody tr")).to_have_count(1)

    page.locator("#best-experiments select[name=best_dataset]").select_option(str(experiments[0].dataset_id))
    expect(page.locator("#best-experiments .kpi-row[data-model-type=ranking]")).to_have_attribute(
        "aria-selected", "true"
    )
    expect(page.locator("#view-modal")).to_have_attribute("data-ready", "true")
    page.locator("#top-configurations tbody tr a").click()  # the view modal, in experiment mode
    expect(page.locator("#view-modal #view-modal-title")).to_have_text(str(experiments[3]))
    expect(page.locator("#view-modal")).to_have_attribute("data-mode", "experiment")


def test_the_training_page_shows_the_best_experiments_too(logged_in_page, olivia, project, experiments):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/training/")
    expect(page.locator("#best-experiments .kpi-row")).to_have_count(3)
    expect(page.locator("#top-configurations tbody tr")).to_have_count(3)


def test_an_experiment_card_shows_its_verdict_against_the_baselines(logged_in_page, olivia, project, experiments):
    TrainingRun.objects.filter(pk=experiments[1].pk).update(blessed=True)
    TrainingRun.objects.filter(pk=experiments[2].pk).update(blessed=False)
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/experiments/")
    expect(page.locator(f"#run-{experiments[1].pk} [data-role=verdict]")).to_have_text("Beats the baselines")
    expect(page.locator(f"#run-{experiments[2].pk} [data-role=verdict]")).to_have_text("Below the baselines")
    expect(page.locator(f"#run-{experiments[2].pk} [data-action=promote]")).to_be_visible()
    expect(page.locator(f"#run-{experiments[2].pk} .stage[data-stage=Pusher]")).to_have_attribute(
        "data-status", "skipped"
    )
