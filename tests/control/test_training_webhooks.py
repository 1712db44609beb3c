"""Webhooks from remote runners: a per-run HMAC signature, idempotent epochs, no going backwards."""

import json
import time

import pytest
from django.test import Client

from ml_platform.training.models import TrainingRun
from ml_pipeline.reporting import WebhookReporter, sign
from tests.control.test_training_worker import catalog, queue_run  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def run(project, olivia, catalog):  # noqa: F811
    return queue_run(project, olivia, catalog)


def post(run, path, event, secret=None, timestamp=None):
    body = json.dumps(event).encode()
    timestamp = timestamp or str(int(time.time()))
    signature = sign(secret or run.webhook_secret, timestamp, body)
    return Client().post(f"/api/training-runs/{run.pk}/webhook/{path}/", body, content_type="application/json",
                         HTTP_X_TIMESTAMP=timestamp, HTTP_X_SIGNATURE=signature)


EPOCH = {"event": "epoch_completed", "epoch": 1, "total_epochs": 3,
         "metrics": {"loss": 2.0, "val_loss": 2.5, "recall_at_100": 0.3, "resources": {"cpu_pct": 90.0}}}


def test_an_unsigned_or_wrongly_signed_webhook_is_rejected(run):
    assert post(run, "epoch-complete", EPOCH, secret="not-the-runs-secret").status_code == 401
    unsigned = Client().post(f"/api/training-runs/{run.pk}/webhook/epoch-complete/", json.dumps(EPOCH),
                             content_type="application/json")
    assert unsigned.status_code == 401
    stale = post(run, "epoch-complete", EPOCH, timestamp=str(int(time.time()) - 3600))
    assert stale.status_code == 401
    run.refresh_from_db()
    assert run.status == TrainingRun.PENDING and not run.metrics_history.exists()


def test_a_repeated_epoch_is_an_update_not_a_second_row(run):
    assert post(run, "epoch-complete", EPOCH).status_code == 200
    again = {**EPOCH, "metrics": {**EPOCH["metrics"], "loss": 1.5}}
    assert post(run, "epoch-complete", again).status_code == 200
    row = run.metrics_history.get()
    assert (row.epoch, row.loss, row.recall_at_100) == (1, 1.5, 0.3)
    run.refresh_from_db()
    assert run.status == TrainingRun.RUNNING and run.current_epoch == 1
    assert run.resources["cpu_pct"] == 90.0


def test_a_completed_run_cannot_become_running_again(run):
    post(run, "stage-started", {"event": "stage_started", "stage": "Compile", "info": {}})
    finished = post(run, "completed", {"event": "run_finished", "status": "completed", "summary": {"blessed": True}})
    assert finished.json() == {"status": "completed"}
    late = post(run, "stage-started", {"event": "stage_started", "stage": "Trainer", "info": {}})
    assert late.status_code == 409
    assert TrainingRun.objects.get(pk=run.pk).status == TrainingRun.COMPLETED


def test_a_failure_event_fails_the_run_with_its_stage(run):
    response = post(run, "failed", {"event": "stage_failed", "stage": "Trainer", "message": "out of memory",
                                    "traceback": "..."})
    assert response.json() == {"status": "failed"}
    run.refresh_from_db()
    assert (run.error_stage, run.error_message, run.stages["Trainer"]["status"]) == ("Trainer", "out of memory",
                                                                                       "failed")


def test_the_runner_side_reporter_signs_what_the_platform_accepts(run, live_server):
    reporter = WebhookReporter(f"{live_server.url}/api/training-runs/{run.pk}/webhook", run.webhook_secret)
    reporter.stage_started("Compile", {})
    reporter.stage_completed("Compile", "spec valid", {}, False)
    reporter.epoch_completed(1, 2, {"loss": 1.0})
    reporter.run_finished("completed", {"blessed": False})
    assert reporter.failures == []
    run.refresh_from_db()
    assert run.status == TrainingRun.NOT_BLESSED
    assert run.stages["Compile"]["status"] == "completed"
    assert run.metrics_history.get().loss == 1.0
