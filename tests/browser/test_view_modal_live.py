"""The view modal over a run the real worker executed: Push, Deploy and Undeploy from its Overview change the
Model Registry and Deployment sections as the spec's tables say, and every tab renders for a finished run.

The worker's deployment requests are carried out in the test's thread (``carry_out_deployments``) while the
modal asks again by itself (a deploy in flight keeps it asking, finished run or not).
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
SLOW_MS = 120_000  # a deploy waits for the endpoint to load the model


@pytest.fixture
def finished(project, olivia):
    folder = Path(settings.DATASET_ALLOWED_ROOTS[0]) / "view-modal-live" / str(project.pk)
    worker = Worker(max_concurrent=1)
    try:
        run = drive(
            worker,
            queue_run(project, olivia, demo_catalog(project, olivia, folder, rows=3_000), epochs=2),
            lambda r: r.is_terminal,
        )
    finally:
        worker.shutdown()
    assert run.status == TrainingRun.COMPLETED, (run.error_stage, run.error_message)
    return run


def carried_out(page, section, state: str) -> None:
    """Wait for the request to be recorded (the section says it is pending), carry it out, see ``state``."""
    expect(section).to_have_attribute("data-state", state.split(">")[0], timeout=30_000)
    assert carry_out_deployments() == 1
    expect(section).to_have_attribute("data-state", state.split(">")[1], timeout=SLOW_MS)


def test_push_deploy_and_undeploy_from_the_overview(logged_in_page, olivia, project, finished, screenshots):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/training/")
    modal = page.locator("#view-modal")
    expect(modal).to_have_attribute("data-ready", "true")
    page.locator(f"#run-{finished.pk} [data-action=view]").click()
    registry = modal.locator("#view-registry")
    expect(registry).to_have_attribute("data-state", "not_registered")
    expect(modal.locator("#blessing-banner")).to_contain_text("Passed evaluation")
    holdout = finished.final_metrics["holdout"]  # the split the Evaluator measured on
    expect(modal.locator("[data-metric=recall_at_100] .split")).to_have_text(holdout)

    registry.locator("[data-action=push]").click()
    expect(registry).to_have_attribute("data-state", "registered", timeout=30_000)
    expect(registry).to_contain_text("version 1")
    deployment = modal.locator("#view-deployment")
    expect(deployment).to_have_attribute("data-state", "ready")
    expect(deployment.locator("[data-target=vertex_ai]")).to_be_disabled()  # not configured here
    expect(page.locator(f"#run-{finished.pk} [data-role=registered]")).to_have_text("v1")  # the card behind too

    with override_settings(**serving_settings()), local_serving():
        deployment.locator("[data-action=deploy]").click()
        carried_out(page, deployment, "deploy-pending>deployed")
        deployment.scroll_into_view_if_needed()
        screenshots("deployed")
        deployment.locator("[data-action=undeploy]").click()
        page.locator("#confirm-dialog-ok").click()
        carried_out(page, deployment, "undeploy-pending>ready")

    for tab in ("pipeline", "training", "insights", "results", "config"):
        modal.locator(f"[data-tab={tab}]").click()
        expect(modal.locator(f"[data-panel={tab}] [data-tab-body={tab}]")).to_be_visible()
    expect(modal.locator("#view-progress .stage-line[data-status=completed]")).to_have_count(8)
    modal.locator("[data-tab=pipeline]").click()
    modal.locator("#view-pipeline .dag-node[data-stage=Trainer] a").click()
    detail = modal.locator("#view-stage-detail[data-stage=Trainer]")
    expect(detail.locator("[data-role=artifact]")).to_contain_text("Trainer")  # its producer
    expect(detail.locator("pre.log")).not_to_be_empty()
    modal.locator("[data-tab=training]").click()
    expect(modal.locator("#view-ridgeline path.ridge")).to_have_count(2)  # an epoch each (the exported ones)
    modal.locator("#view-weights").scroll_into_view_if_needed()
    screenshots("progress")

    modal.locator("[data-tab=insights]").click()
    expect(modal.locator("#view-full-report")).to_be_visible()
    expect(modal.locator("#view-insights [data-card=total_examples]")).not_to_have_text("0")
    modal.locator("#view-insights [data-split=eval]").click()  # the tab, for another split
    expect(modal.locator("#view-insights #split-name")).to_have_text("eval")
    screenshots("insights")
