"""A schedule's notifications: on a failed run, a run not blessed, the schedule pausing itself, a new version
deployed; by e-mail (Django's mail backend: the console unless EMAIL_BACKEND says otherwise) and by signed
webhook.

:func:`notify` records one delivery per target that wants the event; the worker's tick sends what is due
(:func:`deliver_due`). A webhook gets the JSON payload with ``X-Signature: sha256=<hex>``, the HMAC-SHA256
of the exact body with the target's own secret (shown once, when the target is made), and
``X-Delivery-Id``. An answer outside 2xx (a redirect included: none is followed), or none, is retried after
1, 2, 4 and 8 minutes, then given up; every attempt's answer is kept on the delivery. A URL that now points
at a non-public address (:mod:`outbound`) is given up at once.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F, Q

from ml_platform.core import clock
from ml_platform.schedules import outbound
from ml_platform.schedules.models import DeliveryStatus, NotificationDelivery, NotificationTarget, TrainingSchedule

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
TIMEOUT_SECONDS = 10
DELIVERIES_PER_TICK = 20


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 1, 2, 4, 8 minutes."""
    return timedelta(minutes=2 ** (attempts - 1))


def targets_of(schedule: TrainingSchedule):
    """The schedule's own targets and its project's, which hear from every schedule of the project."""
    return NotificationTarget.objects.filter(Q(schedule=schedule) | Q(project_id=schedule.project_id)).order_by("id")


def notify(schedule: TrainingSchedule, event: str, subject: str, details: dict | None = None) -> int:
    """Queue ``event`` for every target of the schedule (or of its project) that wants it; how many deliveries
    were queued."""
    now = clock.now()
    payload = {
        "event": event,
        "subject": subject,
        "schedule": {"id": schedule.pk, "name": schedule.name, "model": schedule.registered_model.name},
        "at": now.isoformat(),
        **(details or {}),
    }
    queued = [
        NotificationDelivery(
            target=target,
            schedule=schedule,
            event=event,
            subject=subject[:300],
            payload=payload,
            next_attempt_at=now,
            created_at=now,
        )
        for target in targets_of(schedule)
        if target.wants(event)
    ]
    NotificationDelivery.objects.bulk_create(queued)
    return len(queued)


def deliver_due(now: datetime | None = None) -> int:
    """Send every delivery whose attempt is due (each claimed first, so two workers never both send it)."""
    now = now or clock.now()
    due = NotificationDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
    sent = 0
    for delivery in due.select_related("target").order_by("next_attempt_at", "id")[:DELIVERIES_PER_TICK]:
        claimed = NotificationDelivery.objects.filter(
            pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=delivery.attempts
        ).update(attempts=F("attempts") + 1, last_attempt_at=now, next_attempt_at=None)
        if claimed:
            delivery.attempts += 1
            _attempt(delivery, now)
            sent += 1
    return sent


def _attempt(delivery: NotificationDelivery, now: datetime) -> None:
    target = delivery.target
    try:
        if target.kind == NotificationTarget.EMAIL:
            body = json.dumps(delivery.payload, indent=2, default=str)
            send_mail(f"[ML Platform] {delivery.subject}", body, settings.DEFAULT_FROM_EMAIL, [target.address])
            status, excerpt = None, "sent"
        else:
            status, excerpt = _post(target, delivery)
        ok = status is None or 200 <= status < 300
        refused = False
    except outbound.Refused as error:  # not retried: the address is the problem, not the moment
        status, excerpt, ok, refused = None, f"refused: {error}", False, True
    except (OSError, http.client.HTTPException, ValueError) as error:
        status, excerpt, ok, refused = None, f"no answer: {error}"[:500], False, False
    fields = {"response_status": status, "response_excerpt": excerpt[:500]}
    if ok:
        fields.update(status=DeliveryStatus.DELIVERED, delivered_at=now)
    elif refused or delivery.attempts >= MAX_ATTEMPTS:
        fields.update(status=DeliveryStatus.FAILED)
    else:
        fields.update(next_attempt_at=now + backoff(delivery.attempts))
    NotificationDelivery.objects.filter(pk=delivery.pk).update(**fields)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _post(target: NotificationTarget, delivery: NotificationDelivery) -> tuple[int, str]:
    """Signed POST through :mod:`outbound` (checked again now: DNS may have changed since the target was saved)."""
    body = json.dumps(delivery.payload, default=str).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "ml-platform-notifications",
        "X-Signature": signature(target.secret, body),
        "X-Delivery-Id": f"notification-{delivery.pk}-{delivery.attempts}",
        "X-Event": delivery.event,
    }
    return outbound.post(target.address, body, headers, TIMEOUT_SECONDS)
