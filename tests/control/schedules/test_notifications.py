"""A schedule's notifications: recorded per target, by e-mail and by signed webhook, retried with back-off."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ml_platform.schedules import notifications, scheduler, services
from ml_platform.schedules.models import DeliveryStatus, NotificationDelivery
from ml_platform.training.models import TrainingRun
from tests.helpers import errors_by_field


class Receiver(BaseHTTPRequestHandler):
    """Answers each POST with the next of ``server.answers`` and keeps what it got."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), body))
        self.server.paths.append(self.path)
        self.send_response(self.server.answers.pop(0))
        self.send_header("Location", "/elsewhere")
        self.end_headers()
        self.wfile.write(b"thanks")

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver(settings):
    """A local receiver (allowed by name: a loopback address is refused otherwise)."""
    settings.NOTIFICATION_ALLOWED_HOSTS = ["127.0.0.1"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.received, server.paths, server.answers = [], [], [500, 200]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def fail_a_run(time_travel, schedule):
    time_travel.shift(timedelta(days=1))
    scheduler.tick()
    run = schedule.firings.latest("id").run
    run.transition(TrainingRun.RUNNING)
    run.transition(TrainingRun.FAILED, error_message="Trainer ran out of memory")
    scheduler.tick()  # settles: the notification is queued and sent in the same tick
    return run


def test_a_failed_run_is_emailed(time_travel, daily, mailoutbox):
    services.add_notification_target(daily, "email", "ops@example.com", [])
    run = fail_a_run(time_travel, daily)
    (mail,) = mailoutbox
    assert (mail.to, mail.subject) == (["ops@example.com"], f"[ML Platform] {run} of recs retraining failed")
    assert "Trainer ran out of memory" in mail.body
    assert NotificationDelivery.objects.get().status == DeliveryStatus.DELIVERED


def test_a_target_hears_only_the_events_it_asked_for(time_travel, daily, mailoutbox):
    services.add_notification_target(daily, "email", "ops@example.com", ["deployed"])
    fail_a_run(time_travel, daily)
    assert mailoutbox == [] and not NotificationDelivery.objects.exists()


def test_a_webhook_is_signed_and_retried_after_a_refusal(time_travel, daily, receiver):
    target = services.add_notification_target(
        daily, "webhook", f"http://127.0.0.1:{receiver.server_port}/hook", ["run_failed"]
    )
    fail_a_run(time_travel, daily)
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, 500)
    time_travel.shift(notifications.backoff(1))
    scheduler.tick()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 2, 200)
    headers, body = receiver.received[-1]
    assert headers["X-Signature"] == notifications.signature(target.secret, body)
    assert json.loads(body)["event"] == "run_failed"


def test_the_api_adds_a_webhook_and_answers_its_secret_once(daily, api, dns):
    url = f"/api/schedules/{daily.pk}/notifications/"
    created = api.post(url, {"kind": "webhook", "address": "https://hooks.example.com/ml"}).json()
    assert created["secret"] and created["events"] == []
    assert "secret" not in api.get(url).json()[0]


@pytest.mark.parametrize(
    ("kind", "address"), [("email", "not-an-address"), ("webhook", "file:///etc/passwd"), ("webhook", "ftp://x/y")]
)
def test_a_bad_address_is_refused_by_name(daily, api, kind, address):
    response = api.post(f"/api/schedules/{daily.pk}/notifications/", {"kind": kind, "address": address})
    assert "address" in errors_by_field(response, 422)


def test_the_deliveries_are_listed_with_their_answers(time_travel, daily, api, receiver):
    services.add_notification_target(daily, "webhook", f"http://127.0.0.1:{receiver.server_port}/hook", [])
    fail_a_run(time_travel, daily)
    (listed,) = api.get(f"/api/schedules/{daily.pk}/deliveries/").json()
    assert (listed["event"], listed["response_status"], listed["attempts"]) == ("run_failed", 500, 1)


def test_a_redirect_is_recorded_not_followed(time_travel, daily, receiver):
    receiver.answers = [302]
    services.add_notification_target(daily, "webhook", f"http://127.0.0.1:{receiver.server_port}/hook", [])
    fail_a_run(time_travel, daily)
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.response_status) == ("pending", 302)
    assert delivery.response_excerpt == "a redirect (to /elsewhere), not followed"
    assert receiver.paths == ["/hook"]


def test_targets_that_chose_failed_runs_keep_hearing_of_failed_deploys_after_the_upgrade(daily):
    """Failed scheduled deploys were notified as ``run_failed`` before ``deploy_failed`` existed."""
    from importlib import import_module

    from django.apps import apps

    chosen = [["run_failed"], ["deployed"], [], ["run_failed", "deploy_failed"]]
    made = [
        services.add_notification_target(daily, "email", f"t{i}@example.com", events) for i, events in enumerate(chosen)
    ]
    import_module("ml_platform.schedules.migrations.0004_deploy_failed_event").subscribe_run_failed_targets(apps, None)
    for target in made:
        target.refresh_from_db()
    assert [sorted(t.events) for t in made] == [
        ["deploy_failed", "run_failed"],
        ["deployed"],
        [],
        ["deploy_failed", "run_failed"],
    ]
