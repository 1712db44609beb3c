"""An external scheduler's webhook: signed with the schedule's secret, and the same claim as the worker's
tick, so the two never fire one occurrence twice."""

from __future__ import annotations

import json
from datetime import timedelta

from django.test import Client

from ml_platform.core import clock
from ml_platform.schedules import scheduler
from ml_platform.schedules.models import ScheduleFiring, TrainingSchedule
from tests.helpers import signed


def call(schedule, secret=None, **signing):
    body = json.dumps({}).encode()
    headers = signed(
        None, body, secret=secret or schedule.webhook_secret, timestamp=str(int(clock.now().timestamp())), **signing
    )
    return Client().post(f"/api/schedules/{schedule.pk}/webhook/", body, content_type="application/json", **headers)


def due(schedule):
    TrainingSchedule.objects.filter(pk=schedule.pk).update(next_run_at=clock.now() - timedelta(minutes=1))
    schedule.refresh_from_db()
    return schedule


def test_a_signed_call_fires_the_due_occurrence(daily):
    answer = call(due(daily)).json()
    assert answer["fired"] is True and answer["status"] == "running"
    assert ScheduleFiring.objects.get(schedule=daily).fired_by == "webhook"


def test_a_repeated_call_fires_nothing_more(daily):
    due(daily)
    call(daily)
    assert call(daily).json()["fired"] is False
    assert ScheduleFiring.objects.filter(schedule=daily).count() == 1


def test_the_webhook_and_the_worker_racing_for_one_occurrence_make_one_run(daily):
    due(daily)
    call(daily)
    scheduler.tick("worker")
    assert ScheduleFiring.objects.filter(schedule=daily, run__isnull=False).count() == 1


def test_a_wrong_signature_is_refused_and_fires_nothing(daily):
    response = call(due(daily), secret="not-the-secret")
    assert (response.status_code, response.json()["error"]) == (401, "Bad signature")
    assert not ScheduleFiring.objects.filter(schedule=daily).exists()


def test_a_missing_schedule_is_refused_like_a_wrong_signature(daily):
    daily.pk = 999_999
    assert call(daily).json()["error"] == "Bad signature"
