"""The incoming webhook of an external scheduler (Cloud Scheduler, a system cron): "fire what is due now".

``POST /api/schedules/{id}/webhook/``, signed as the remote runners' webhooks are
(``ml_pipeline.reporting.sign``: HMAC-SHA256 with the schedule's own secret over
the request's X-Timestamp, X-Delivery-Id and body), fresh within five minutes.
It claims the schedule's due occurrence through the very claim the worker's tick
uses (``scheduler.claim``), so an external and the embedded scheduler racing for
one occurrence make one run; a call with nothing due, a retry or a replay
included, fires nothing and says so.
"""

from __future__ import annotations

import hmac
import secrets

from django.core.exceptions import RequestDataTooBig
from ninja import Router, Schema

from ml_pipeline.reporting import sign
from ml_platform.core import clock
from ml_platform.core.errors import ApiError, refusals
from ml_platform.schedules import scheduler
from ml_platform.schedules.models import TrainingSchedule
from ml_platform.training.webhooks import DELIVERY_ID, MAX_CLOCK_SKEW_SECONDS, MAX_ID, TIMESTAMP

router = Router(tags=["schedules"])
_NO_SECRET = secrets.token_urlsafe(32)  # signed against for a missing schedule: the same HMAC as a wrong one


class FiredOut(Schema):
    fired: bool
    firing_id: int | None
    run_id: int | None
    status: str | None
    next_run_at: str | None


def authenticate(request, schedule_id: int) -> TrainingSchedule:
    """The schedule whose secret signed the request; 401 otherwise, the same for a missing schedule."""
    timestamp = request.headers.get("X-Timestamp", "")
    delivery_id = request.headers.get("X-Delivery-Id", "")
    signature = request.headers.get("X-Signature", "")
    if not TIMESTAMP.fullmatch(timestamp) or abs(clock.now().timestamp() - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
        raise ApiError(401, "Missing or stale X-Timestamp")
    if not DELIVERY_ID.fullmatch(delivery_id):
        raise ApiError(401, "Missing or malformed X-Delivery-Id")
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError(413, "The request is too large") from None
    schedule = TrainingSchedule.objects.filter(pk=schedule_id).first() if 0 < schedule_id <= MAX_ID else None
    expected = sign(schedule.webhook_secret if schedule else _NO_SECRET, timestamp, delivery_id, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()) or schedule is None:
        raise ApiError(401, "Bad signature")
    return schedule


@router.post("/schedules/{schedule_id}/webhook/", auth=None, response={200: FiredOut, **refusals(400, 413, 422)})
def schedule_webhook(request, schedule_id: int):
    """Fire the schedule's due occurrence, if it still has one (``fired`` says whether this call did)."""
    schedule = authenticate(request, schedule_id)
    firing = scheduler.fire_due(schedule.pk, "webhook")
    schedule.refresh_from_db()
    return {
        "fired": firing is not None,
        "firing_id": firing.pk if firing else None,
        "run_id": firing.run_id if firing else None,
        "status": firing.status if firing else None,
        "next_run_at": schedule.next_run_at.isoformat() if schedule.next_run_at else None,
    }
