"""Webhooks from remote runners: signed, applied once, and unable to move a run or a stage backwards.

A runner on another machine (a Vertex AI job) reports through
``ml_pipeline.reporting.WebhookReporter``; each request is signed with the
run's own secret over its timestamp, its delivery id and its body. Events
are applied through the same DatabaseReporter the local worker uses, so a
run looks the same whichever way it ran; the first event makes the run a
remote one (see TrainingRun's docstring for why then).

A request gets past, in order:

1. its signature: 401 otherwise, worded the same whether the run exists or not;
2. its body, one of ``ml_pipeline.events``' records, whose stage is one of
   the eight and whose epoch is within the run's: 400 naming the field;
3. its delivery id, recorded in the transaction that applies the event: a
   repeat answers 200 ``{"status": "duplicate"}`` and changes nothing;
4. the run's and the stage's transitions: 409, and nothing is stored.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from ninja import Router, Schema
from pydantic import Field

from ml_pipeline.errors import ConfigError, Problem
from ml_pipeline.events import (
    ComputeAttempt,
    EpochCompleted,
    RunFinished,
    StageCompleted,
    StageFailed,
    StageSkipped,
    StageStarted,
    parse_event,
)
from ml_pipeline.reporting import WEBHOOK_PATHS, sign
from ml_pipeline.spec import StageStatus
from ml_platform.audit import services as audit
from ml_platform.core import clock
from ml_platform.core.errors import ApiError, Conflict, refusals
from ml_platform.training.models import InvalidStageTransition, InvalidTransition, TrainingRun, WebhookDelivery
from ml_platform.training.reporter import DatabaseReporter

router = Router(tags=["webhooks"])
MAX_CLOCK_SKEW_SECONDS = 300
# A delivery is remembered for twice the freshness window: a replay of a forgotten one is stale by then,
# even on web servers whose clocks differ a little.
DELIVERY_MEMORY = timedelta(seconds=2 * MAX_CLOCK_SKEW_SECONDS)
TIMESTAMP = re.compile(r"[0-9]{1,12}")
DELIVERY_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
MAX_ID = 2**63 - 1
# Signed against when the run does not exist, so that costs the same HMAC as a wrong signature.
_NO_SECRET = secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Delivery:
    run: TrainingRun
    delivery_id: str
    signed_at: datetime
    body: bytes


def verify_signed(request, objects, object_id: int, too_large: str):
    """``(object, timestamp, delivery_id, body)`` of a request signed with ``objects.get(pk=object_id)``'s
    ``webhook_secret``; 401 otherwise, the same for a missing object as for a wrong signature (a missing one
    is signed against a secret nobody has, so both take the same time). Run events and schedule triggers
    share it."""
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
        raise ApiError(413, too_large) from None
    found = objects.filter(pk=object_id).first() if 0 < object_id <= MAX_ID else None
    expected = sign(found.webhook_secret if found else _NO_SECRET, timestamp, delivery_id, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()) or found is None:
        raise ApiError(401, "Bad signature")
    return found, timestamp, delivery_id, body


def authenticate(request, run_id: int) -> Delivery:
    """The signed delivery of a run's event."""
    run, timestamp, delivery_id, body = verify_signed(request, TrainingRun.objects, run_id, "The event is too large")
    return Delivery(run, delivery_id, datetime.fromtimestamp(int(timestamp), tz=UTC), body)


def invalid(*problems: Problem) -> ApiError:
    return ApiError(400, "Invalid event", list(problems))


def check_epochs(run: TrainingRun, event: EpochCompleted) -> None:
    """An epoch of this run: 1..its epoch count, reported out of that count."""
    count = run.epoch_count
    problems = []
    if event.epoch > count:
        problems.append(Problem("epoch", f"must be between 1 and {count}, the run's epochs"))
    if event.total_epochs != count:
        problems.append(Problem("total_epochs", f"this run trains {count} epochs"))
    if problems:
        raise invalid(*problems)


def take(run: TrainingRun) -> None:
    """The run is running for a remote runner, or becomes so now: its first event takes it from the queue."""
    if run.status in (TrainingRun.PENDING, TrainingRun.SUBMITTING):
        run.transition(TrainingRun.RUNNING, runner=TrainingRun.REMOTE, worker_id="", worker_pid=None, heartbeat_at=None)
    elif run.status != TrainingRun.RUNNING:
        raise Conflict(f"Run is {run.status}; it cannot report progress any more")
    elif not run.is_remote:
        raise Conflict("Run is executed by the local worker; a remote runner cannot report for it")


def finish(run: TrainingRun, event: RunFinished) -> None:
    if event.status == StageStatus.COMPLETED:
        wanted, fields = run.outcome_status(True, event.summary.blessed), {"blessed": event.summary.blessed}
    else:
        wanted = TrainingRun.FAILED
        fields = {"error_stage": event.summary.stage or "", "error_message": event.summary.message or "failed"}
    if run.is_remote and run.status == wanted:
        return  # the runner's closing report of what is recorded already (a failed stage fails the run at once)
    take(run)
    run.transition(wanted, **fields)


def apply(run: TrainingRun, event) -> None:
    """The event's effect on the run (already locked), through the local worker's reporter."""
    if isinstance(event, RunFinished):
        finish(run, event)
        return
    if isinstance(event, EpochCompleted):
        check_epochs(run, event)
    take(run)
    if isinstance(event, ComputeAttempt):
        record_attempt(run, event)
        return
    reporter = DatabaseReporter(run, sample_resources=False, strict=True)
    if isinstance(event, StageStarted):
        reporter.stage_started(event.stage, event.info.model_dump())
    elif isinstance(event, StageCompleted):
        reporter.stage_completed(event.stage, event.summary, event.properties, event.cached)
    elif isinstance(event, StageSkipped):
        reporter.stage_skipped(event.stage, event.reason)
    elif isinstance(event, StageFailed):
        reporter.stage_failed(event.stage, event.message, event.traceback)
        run.transition(TrainingRun.FAILED, error_stage=event.stage, error_message=event.message)
    elif isinstance(event, EpochCompleted):
        reporter.epoch_completed(event.epoch, event.total_epochs, event.metrics.model_dump(exclude_none=True))


def record_attempt(run: TrainingRun, event: ComputeAttempt) -> None:
    """Keep each try at the stage's compute (a GPU shape, and why it was passed over) on its stage line."""
    stages = dict(run.stages or {})
    line = dict(stages.get(event.stage) or {"status": StageStatus.PENDING})
    line["attempts"] = [*line.get("attempts", []), event.model_dump(exclude={"event", "stage"}, exclude_none=True)]
    stages[event.stage] = line
    TrainingRun.objects.filter(pk=run.pk).update(stages=stages)


def deliver(delivery: Delivery, event) -> str:
    """Apply a delivery once: its id is recorded in the same transaction as its effect (so a concurrent
    duplicate waits, then finds it), and a refused event records nothing. The run's status, or "duplicate"."""
    try:
        with transaction.atomic():
            run = TrainingRun.objects.select_for_update().filter(pk=delivery.run.pk).first()
            if run is None:  # deleted since it was authenticated
                raise ApiError(401, "Bad signature")
            try:
                with transaction.atomic():
                    WebhookDelivery.objects.create(
                        training_run=run, delivery_id=delivery.delivery_id, signed_at=delivery.signed_at
                    )
            except IntegrityError:
                return "duplicate"
            apply(run, event)
            TrainingRun.objects.filter(pk=run.pk).update(last_event_at=clock.now())
    except InvalidTransition as refused:
        raise Conflict(f"Run is {refused.current}; it cannot become {refused.wanted}") from None
    except InvalidStageTransition as refused:
        raise Conflict(
            f"Stage {refused.stage} is {refused.current}; it cannot become {refused.wanted}",
            [Problem("stage", f"{refused.stage} is {refused.current}")],
        ) from None
    WebhookDelivery.objects.filter(signed_at__lt=clock.now() - DELIVERY_MEMORY).delete()
    return TrainingRun.objects.values_list("status", flat=True).get(pk=run.pk)


class DeliveryOut(Schema):
    status: str = Field(description="The run's status after the event, or 'duplicate' for a replayed delivery")


# 400: a malformed event (naming the field); 401: a bad or stale signature; 409: the event would move the run or
# a stage backwards (or the run is not this runner's); 413: too large; 422: a run id that is no number.
@router.post(
    "/training-runs/{run_id}/webhook/{event_path}/",
    auth=None,
    response={200: DeliveryOut, **refusals(400, 409, 413, 422)},
)
def receive(request, run_id: int, event_path: str):
    """Apply one signed runner event, once."""
    delivery = authenticate(request, run_id)
    try:
        event = parse_event(delivery.body)
    except ConfigError as error:
        raise invalid(*error.problems) from None
    if WEBHOOK_PATHS[event.event] != event_path:
        raise invalid(Problem("event", f"a {event.event} event is posted to webhook/{WEBHOOK_PATHS[event.event]}/"))
    before = delivery.run.status
    status = deliver(delivery, event)
    if status in TrainingRun.TERMINAL and status != before:  # the runner ended the run (once, not per report)
        audit.record(audit.remote_runner(request), audit.Action.FINISH, delivery.run, changes={"status": status})
    return {"status": status}
