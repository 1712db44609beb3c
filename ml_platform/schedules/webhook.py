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

from ninja import Router, Schema

from ml_platform.core.errors import refusals
from ml_platform.schedules import scheduler
from ml_platform.schedules.models import TrainingSchedule
from ml_platform.training.webhooks import verify_signed

router = Router(tags=["schedules"])


class FiredOut(Schema):
    fired: bool
    firing_id: int | None
    run_id: int | None
    status: str | None
    next_run_at: str | None


def authenticate(request, schedule_id: int) -> TrainingSchedule:
    """The schedule whose secret signed the request; 401 otherwise, the same for a missing schedule."""
    schedule, *_ = verify_signed(request, TrainingSchedule.objects, schedule_id, "The request is too large")
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
