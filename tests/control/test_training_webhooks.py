"""Webhooks from remote runners: a per-run HMAC signature, each delivery applied once, no going backwards."""

import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connections
from django.test import Client

from ml_pipeline.reporting import WebhookReporter
from ml_platform.core import clock
from ml_platform.training import services
from ml_platform.training.models import TrainingRun, WebhookDelivery
from ml_platform.training.webhooks import DELIVERY_MEMORY, MAX_CLOCK_SKEW_SECONDS
from ml_platform.training.worker import Worker
from tests.helpers import CURRENT_TIME, queue_run, signed
from tests.helpers import post_webhook as post
from tests.helpers import send_webhook as send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def run(project, olivia, catalog):
    return queue_run(project, olivia, catalog)  # two epochs


EPOCH = {
    "event": "epoch_completed",
    "epoch": 1,
    "total_epochs": 2,
    "metrics": {"loss": 2.0, "val_loss": 2.5, "recall_at_100": 0.3, "resources": {"cpu_pct": 90.0}},
}
STARTED = {"event": "stage_started", "stage": "Compile", "info": {}}
COMPLETED = {"event": "stage_completed", "stage": "Compile", "summary": "spec valid", "properties": {}, "cached": False}


def unchanged(run) -> bool:
    """Nothing of the event was stored: the run is still queued, with no metrics and no delivery."""
    run.refresh_from_db()
    return (
        run.status == TrainingRun.PENDING
        and run.runner == TrainingRun.LOCAL
        and all(stage["status"] in ("pending", "skipped") for stage in run.stages.values())
        and not run.metrics_history.exists()
        and not WebhookDelivery.objects.exists()
    )


def test_an_unsigned_or_wrongly_signed_webhook_is_rejected(run):
    assert post(run, "epoch-complete", EPOCH, secret="not-the-runs-secret").status_code == 401
    unsigned = Client().post(
        f"/api/training-runs/{run.pk}/webhook/epoch-complete/", json.dumps(EPOCH), content_type="application/json"
    )
    assert unsigned.status_code == 401
    assert unchanged(run)


def test_a_delivery_is_refused_once_its_signature_is_older_than_the_clock_skew(time_travel, run):
    body = json.dumps(EPOCH).encode()
    headers = signed(run, body)  # at CURRENT_TIME
    time_travel.shift(MAX_CLOCK_SKEW_SECONDS + 1)
    assert send(run.pk, "epoch-complete", body, headers).status_code == 401
    assert unchanged(run)
    time_travel.shift(-2)  # just inside the window: the same delivery is applied
    assert send(run.pk, "epoch-complete", body, headers).status_code == 200


def test_a_delivery_signed_further_ahead_than_the_clock_skew_is_refused(time_travel, run):
    body = json.dumps(EPOCH).encode()
    time_travel.shift(MAX_CLOCK_SKEW_SECONDS + 1)
    headers = signed(run, body)  # by a runner whose clock is ahead
    time_travel.move_to(CURRENT_TIME)
    assert send(run.pk, "epoch-complete", body, headers).status_code == 401
    assert unchanged(run)


def test_the_delivery_id_is_covered_by_the_signature(run):
    body = json.dumps(EPOCH).encode()
    headers = signed(run, body)
    headers["HTTP_X_DELIVERY_ID"] = uuid.uuid4().hex  # a replay dressed up as a new delivery
    assert send(run.pk, "epoch-complete", body, headers).status_code == 401
    assert unchanged(run)


def test_unsigned_request_answers_the_same_for_missing_and_existing_runs(run):
    body = json.dumps(EPOCH).encode()
    now = str(int(time.time()))
    attempts = {
        "unsigned": {},
        "wrong secret": signed(run, body, secret="guessed"),
        "stale": signed(run, body, timestamp=str(int(now) - 3600)),
        "no delivery id": {**signed(run, body), "HTTP_X_DELIVERY_ID": ""},
        "odd timestamp": {**signed(run, body), "HTTP_X_TIMESTAMP": "²³"},
        "non-ASCII signature": {**signed(run, body), "HTTP_X_SIGNATURE": "sha256=é"},
    }
    for name, headers in attempts.items():
        answers = [send(run_id, "epoch-complete", body, headers) for run_id in (run.pk, run.pk + 1000, 2**63)]
        assert {a.status_code for a in answers} == {401}, name
        assert len({a.content for a in answers}) == 1, name
    assert unchanged(run)


def test_replayed_delivery_is_applied_once(run):
    first_body = json.dumps(EPOCH).encode()
    first = signed(run, first_body)
    assert send(run.pk, "epoch-complete", first_body, first).json() == {"status": "running"}
    assert post(run, "epoch-complete", {**EPOCH, "metrics": {"loss": 1.5}}).status_code == 200

    replay = send(run.pk, "epoch-complete", first_body, first)  # the identical request, inside the window
    assert (replay.status_code, replay.json()) == (200, {"status": "duplicate"})
    assert run.metrics_history.get().loss == 1.5
    assert WebhookDelivery.objects.filter(training_run=run).count() == 2


def test_a_retried_delivery_with_a_new_timestamp_is_applied_once(time_travel, run):
    body = json.dumps(COMPLETED).encode()
    delivery_id = uuid.uuid4().hex
    assert post(run, "stage-started", STARTED).status_code == 200
    assert send(run.pk, "stage-complete", body, signed(run, body, delivery_id=delivery_id)).status_code == 200
    time_travel.shift(timedelta(minutes=1))
    retry = signed(run, body, delivery_id=delivery_id)  # signed anew, a minute later
    assert send(run.pk, "stage-complete", body, retry).json() == {"status": "duplicate"}


def test_concurrent_duplicates_are_applied_once(run):
    body = json.dumps(STARTED).encode()
    headers = signed(run, body)
    barrier, answers = threading.Barrier(4), []

    def deliver():
        try:
            barrier.wait()
            answers.append(send(run.pk, "stage-started", body, headers).json())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a["status"] for a in answers) == ["duplicate"] * 3 + ["running"]
    assert WebhookDelivery.objects.count() == 1


def test_deliveries_past_the_freshness_window_are_pruned(time_travel, run):
    assert post(run, "stage-started", STARTED).status_code == 200
    time_travel.shift(DELIVERY_MEMORY + timedelta(seconds=1))
    assert post(run, "stage-complete", COMPLETED).status_code == 200
    remembered = WebhookDelivery.objects.values_list("signed_at", flat=True)
    assert list(remembered) == [CURRENT_TIME + DELIVERY_MEMORY + timedelta(seconds=1)]


def test_a_refused_event_records_no_delivery(run):
    body = json.dumps({**EPOCH, "epoch": 3}).encode()
    headers = signed(run, body)
    assert send(run.pk, "epoch-complete", body, headers).status_code == 400
    assert send(run.pk, "epoch-complete", body, headers).status_code == 400  # refused again, not "duplicate"
    assert unchanged(run)


def test_a_repeated_epoch_is_an_update_not_a_second_row(run):
    assert post(run, "epoch-complete", EPOCH).status_code == 200
    again = {**EPOCH, "metrics": {**EPOCH["metrics"], "loss": 1.5}}
    assert post(run, "epoch-complete", again).status_code == 200
    row = run.metrics_history.get()
    assert (row.epoch, row.loss, row.recall_at_100) == (1, 1.5, 0.3)
    run.refresh_from_db()
    assert run.status == TrainingRun.RUNNING and run.current_epoch == 1
    assert run.resources["cpu_pct"] == 90.0


def test_completed_stage_cannot_restart(run):
    assert post(run, "stage-started", STARTED).status_code == 200
    assert post(run, "stage-complete", COMPLETED).status_code == 200
    restarted = post(run, "stage-started", STARTED)
    assert restarted.status_code == 409
    assert restarted.json()["error"] == "Stage Compile is completed; it cannot become running"
    run.refresh_from_db()
    assert run.stages["Compile"]["status"] == "completed"
    assert WebhookDelivery.objects.count() == 2


@pytest.mark.parametrize("first, then", [("completed", "failed"), ("completed", "skipped"), ("skipped", "running")])
def test_an_ended_stage_does_not_move_backwards(run, first, then):
    events = {
        "running": ("stage-started", STARTED),
        "completed": ("stage-complete", COMPLETED),
        "skipped": ("stage-complete", {"event": "stage_skipped", "stage": "Compile", "reason": "no"}),
        "failed": ("failed", {"event": "stage_failed", "stage": "Compile", "message": "boom"}),
    }
    assert post(run, *events[first]).status_code == 200
    assert post(run, *events[then]).status_code == 409
    run.refresh_from_db()
    assert (run.status, run.stages["Compile"]["status"]) == (TrainingRun.RUNNING, first)


def test_a_resumed_runner_reporting_a_reused_stage_changes_nothing(run):
    assert post(run, "stage-started", STARTED).status_code == 200
    assert post(run, "stage-complete", COMPLETED).status_code == 200
    reused = {**STARTED, "info": {"cached": True}}
    assert post(run, "stage-started", reused).status_code == 200
    run.refresh_from_db()
    assert run.stages["Compile"]["status"] == "completed"
    assert post(run, "stage-complete", {**COMPLETED, "cached": True}).status_code == 200
    run.refresh_from_db()
    assert run.stages["Compile"]["status"] == "cached"


def test_a_completed_run_cannot_become_running_again(run):
    post(run, "stage-started", STARTED)
    finished = post(run, "completed", {"event": "run_finished", "status": "completed", "summary": {"blessed": True}})
    assert finished.json() == {"status": "completed"}
    late = post(run, "stage-started", {"event": "stage_started", "stage": "Trainer", "info": {}})
    assert late.status_code == 409
    assert TrainingRun.objects.get(pk=run.pk).status == TrainingRun.COMPLETED


def test_a_failure_event_fails_the_run_with_its_stage(run):
    response = post(
        run, "failed", {"event": "stage_failed", "stage": "Trainer", "message": "out of memory", "traceback": "..."}
    )
    assert response.json() == {"status": "failed"}
    run.refresh_from_db()
    assert (run.error_stage, run.error_message, run.stages["Trainer"]["status"]) == (
        "Trainer",
        "out of memory",
        "failed",
    )
    # The runner's closing report of the same outcome is not an error.
    closing = post(
        run,
        "completed",
        {"event": "run_finished", "status": "failed", "summary": {"stage": "Trainer", "message": "out of memory"}},
    )
    assert closing.json() == {"status": "failed"}


@pytest.mark.parametrize("stage", ["../../etc", "123", "", "compile", "Trainer/../Pusher", 123, None])
def test_unknown_stage_name_is_refused(run, stage):
    response = post(run, "stage-started", {"event": "stage_started", "stage": stage, "info": {}})
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["stage"]
    assert unchanged(run) and str(stage) not in run.stages


@pytest.mark.parametrize(
    "epoch, total, fields",
    [
        (10**12, 2, ["epoch"]),
        (3, 2, ["epoch"]),
        (0, 2, ["epoch"]),
        (-1, 2, ["epoch"]),
        (1, 10**12, ["total_epochs"]),
        (1, 3, ["total_epochs"]),
        (10**12, 10**12, ["epoch", "total_epochs"]),
    ],
)
def test_absurd_epoch_is_refused(run, epoch, total, fields):
    response = post(run, "epoch-complete", {**EPOCH, "epoch": epoch, "total_epochs": total})
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == fields
    assert unchanged(run)
    assert run.total_epochs == 2 and run.current_epoch is None


NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("epoch-complete", b"not json", "body"),  # not JSON
        ("epoch-complete", b"\xff\xfe{}", "body"),
        ("epoch-complete", b"[1, 2]", "body"),  # JSON, not an object
        ("epoch-complete", b'"epoch"', "body"),
        ("epoch-complete", b"{}", "event"),  # missing fields
        ("epoch-complete", b'{"event": "epoch_completed"}', "epoch"),
        ("epoch-complete", b'{"event": "drop_tables"}', "event"),
        ("epoch-complete", b'{"event": "epoch_completed", "epoch": "one", "total_epochs": 2}', "epoch"),  # wrong types
        ("epoch-complete", b'{"event": "epoch_completed", "epoch": 1.5, "total_epochs": 2}', "epoch"),
        ("epoch-complete", b'{"event": "epoch_completed", "epoch": 1, "total_epochs": 2, "metrics": [1]}', "metrics"),
        ("completed", b'{"event": "run_finished", "status": "completed", "summary": "blessed"}', "summary"),
        ("completed", b'{"event": "run_finished", "status": 1}', "status"),
        ("stage-started", b'{"event": "stage_started", "stage": "Compile", "info": [1]}', "info"),
        ("stage-complete", b'{"event": "stage_completed", "stage": "Compile", "summary": {"a": 1}}', "summary"),
        (
            "completed",
            b'{"event": "run_finished", "status": "completed", "summary": {"blessed": {"a": [[[]]]}}}',
            "summary.blessed",
        ),  # nested junk
        (
            "epoch-complete",
            b'{"event": "epoch_completed", "epoch": 1, "total_epochs": 2, "metrics": {"loss": [[[1]]]}}',
            "metrics.loss",
        ),
        (
            "epoch-complete",
            b'{"event": "epoch_completed", "epoch": 1, "total_epochs": 2, "metrics": {"histograms": '
            b'{"weights": {"q": {"counts": [-1], "edges": [0.0]}}}}}',
            "metrics.histograms.weights.q.counts[0]",
        ),
        ("epoch-complete", NESTED, "body"),
        ("epoch-complete", b'{"event": "epoch_completed", "epoch": 1e400, "total_epochs": 2}', "epoch"),  # huge numbers
        (
            "epoch-complete",
            b'{"event": "epoch_completed", "epoch": 1, "total_epochs": 2, "metrics": {"loss": 1e400}}',
            "metrics.loss",
        ),
        ("epoch-complete", b'{"event": "epoch_completed", "epoch": ' + b"9" * 5000 + b', "total_epochs": 2}', "body"),
        (
            "epoch-complete",
            b'{"event": "epoch_completed", "epoch": 1, "total_epochs": 2, "metrics": {"loss": NaN}}',
            "metrics.loss",
        ),  # non-finite floats
        (
            "epoch-complete",
            b'{"event": "epoch_completed", "epoch": 1, "total_epochs": 2, "metrics": {"loss": -Infinity}}',
            "metrics.loss",
        ),
        ("epoch-complete", b'{"event": "epoch_completed", "epoch": 1, "total_epochs": 2, "time": Infinity}', "time"),
        ("stage-started", b'{"event": "stage_started", "stage": "Compile", "drop": "tables"}', "drop"),  # unknown field
        ("stage-started", b'{"event": "stage_failed", "stage": "Compile"}', "event"),  # posted to the wrong path
    ],
)
def test_malformed_signed_bodies_answer_400(run, path, body, field):
    response = send(run.pk, path, body, signed(run, body))
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["error"] == "Invalid event"
    assert field in [e["field"] for e in answer["errors"]]
    assert unchanged(run)


def test_an_oversized_event_answers_413(run, settings):
    body = (
        b'{"event": "stage_started", "stage": "Compile", "info": {}, "junk": "'
        + b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
        + b'"}'
    )
    assert send(run.pk, "stage-started", body, signed(run, body)).status_code == 413
    assert unchanged(run)


def test_the_first_event_makes_the_run_remote_and_each_event_keeps_it_alive(time_travel, run, api):
    assert api.get(f"/api/training-runs/{run.pk}/").json()["runner"] == "local"
    assert post(run, "stage-started", STARTED).status_code == 200
    run.refresh_from_db()
    assert (run.status, run.runner, run.heartbeat_at) == (TrainingRun.RUNNING, TrainingRun.REMOTE, None)
    assert run.last_event_at == CURRENT_TIME
    time_travel.shift(timedelta(minutes=1))
    assert post(run, "stage-complete", COMPLETED).status_code == 200
    run.refresh_from_db()
    assert run.last_event_at == CURRENT_TIME + timedelta(minutes=1)
    detail = api.get(f"/api/training-runs/{run.pk}/").json()
    assert detail["runner"] == "remote" and detail["last_event_at"] is not None


def test_local_worker_leaves_remote_runs_alone(time_travel, run, settings):
    settings.RUN_STALE_AFTER_SECONDS = 0
    assert post(run, "stage-started", STARTED).status_code == 200
    time_travel.shift(timedelta(days=1))  # not a word from its runner since
    worker = Worker()
    assert worker.recover_orphans() == 0
    assert worker.claim_and_start() is None
    worker.step()
    assert worker.children == {}
    run.refresh_from_db()
    assert (run.status, run.runner, run.worker_id, run.attempts) == (TrainingRun.RUNNING, TrainingRun.REMOTE, "", 0)
    assert post(run, "stage-complete", COMPLETED).json() == {"status": "running"}


def test_the_local_worker_never_claims_a_remote_run(run):
    TrainingRun.objects.filter(pk=run.pk).update(runner=TrainingRun.REMOTE)  # taken, not started yet
    assert Worker().claim_and_start() is None
    run.refresh_from_db()
    assert run.status == TrainingRun.PENDING


def test_a_runner_cannot_report_for_a_run_the_local_worker_runs(run):
    run.transition(TrainingRun.RUNNING, worker_id="local-worker", heartbeat_at=clock.now(), attempts=1)
    refused = post(run, "stage-started", STARTED)
    assert refused.status_code == 409 and "local worker" in refused.json()["error"]
    finished = post(run, "completed", {"event": "run_finished", "status": "completed", "summary": {"blessed": True}})
    assert finished.status_code == 409
    run.refresh_from_db()
    assert (run.status, run.runner, run.stages["Compile"]["status"]) == (
        TrainingRun.RUNNING,
        TrainingRun.LOCAL,
        "pending",
    )


def test_cancelling_a_remote_run_ends_it_and_refuses_its_runner(run):
    assert post(run, "stage-started", STARTED).status_code == 200
    run.refresh_from_db()
    services.request_cancel(run)
    assert run.status == TrainingRun.CANCELLED
    assert post(run, "stage-complete", COMPLETED).status_code == 409


def test_the_runner_side_reporter_signs_what_the_platform_accepts(run, live_server):
    reporter = WebhookReporter(f"{live_server.url}/api/training-runs/{run.pk}/webhook", run.webhook_secret)
    reporter.stage_started("Compile", {})
    reporter.stage_completed("Compile", "spec valid", {}, False)
    reporter.epoch_completed(1, 2, {"loss": 1.0, "val_loss": float("nan")})  # a diverged value goes as null
    reporter.run_finished("completed", {"blessed": False})
    assert reporter.failures == []
    run.refresh_from_db()
    assert run.status == TrainingRun.NOT_BLESSED and run.runner == TrainingRun.REMOTE
    assert run.stages["Compile"]["status"] == "completed"
    row = run.metrics_history.get()
    assert (row.loss, row.val_loss) == (1.0, None)
    assert WebhookDelivery.objects.filter(training_run=run).count() == 4
