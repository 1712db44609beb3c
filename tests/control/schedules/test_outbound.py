"""Notification webhooks reach public addresses only (no server-side request forgery): refused by name when
saved, and again when sent, since DNS may change; NOTIFICATION_ALLOWED_HOSTS lets named hosts through."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ml_platform.schedules import scheduler, services
from ml_platform.schedules.models import DeliveryStatus, NotificationDelivery, NotificationTarget
from ml_platform.training.models import TrainingRun
from tests.helpers import errors_by_field


def add_webhook(api, schedule, address):
    return api.post(f"/api/schedules/{schedule.pk}/notifications/", {"kind": "webhook", "address": address})


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("http://127.0.0.1:8000/hook", "a loopback address"),
        ("http://[::1]/hook", "a loopback address"),
        ("http://[::ffff:127.0.0.1]/hook", "a loopback address"),
        ("http://10.0.0.5/hook", "a private address"),
        ("https://192.168.1.1/hook", "a private address"),
        ("http://169.254.169.254/latest/meta-data/", "the cloud metadata address"),
        ("http://169.254.10.10/hook", "a link-local address"),
        ("http://224.0.0.1/hook", "a multicast address"),
        ("http://240.0.0.1/hook", "a reserved address"),
        ("http://0.0.0.0/hook", "an unspecified address"),
    ],
)
def test_a_webhook_to_a_non_public_address_is_refused_by_name(daily, api, dns, address, kind):
    errors = errors_by_field(add_webhook(api, daily, address), 422)
    assert kind in errors["address"]
    assert not NotificationTarget.objects.exists()


def test_a_host_name_that_resolves_to_a_private_address_is_refused(daily, api, dns):
    dns["hooks.example.com"] = ["93.184.216.34", "10.1.2.3"]  # one bad address is enough
    errors = errors_by_field(add_webhook(api, daily, "https://hooks.example.com/ml"), 422)
    assert "its host hooks.example.com points at a private address" in errors["address"]
    assert "10.1.2.3" not in errors["address"]


def test_a_host_that_does_not_resolve_is_refused(daily, api, dns):
    errors = errors_by_field(add_webhook(api, daily, "https://nowhere.invalid/ml"), 422)
    assert errors["address"] == "its host nowhere.invalid does not resolve"


def test_an_allowed_host_may_resolve_to_a_private_address(daily, api, dns, settings):
    settings.NOTIFICATION_ALLOWED_HOSTS = ["Hooks.Example.com"]
    dns["hooks.example.com"] = ["10.1.2.3"]
    assert add_webhook(api, daily, "https://hooks.example.com/ml").status_code == 201


def test_a_target_whose_dns_turned_private_is_refused_when_sent_and_not_retried(time_travel, daily, dns):
    services.add_notification_target(daily, "webhook", "https://hooks.example.com/ml", [])
    dns["hooks.example.com"] = ["169.254.169.254"]
    time_travel.shift(timedelta(days=1))
    scheduler.tick()
    run = daily.firings.latest("id").run
    run.transition(TrainingRun.RUNNING)
    run.transition(TrainingRun.FAILED, error_message="Trainer ran out of memory")
    scheduler.tick()
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == (DeliveryStatus.FAILED, 1, None)
    assert delivery.response_excerpt.startswith("refused: its host hooks.example.com points at the cloud metadata")
