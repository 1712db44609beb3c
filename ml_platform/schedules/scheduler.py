"""The embedded scheduler: the worker's tick claims due schedules, fires them, and settles what they ran.

* **Claim.** An occurrence belongs to whoever moves the schedule's
  ``next_run_at`` past it: ``UPDATE ... WHERE next_run_at = <the occurrence>``
  (after ``SELECT ... FOR UPDATE SKIP LOCKED`` where the database has it, so
  concurrent tickers on PostgreSQL do not even queue on the row). Exactly one
  claimer's UPDATE matches; a unique firing per occurrence backs it up. The
  next occurrence is the first one after *now*, so a schedule that was due
  several times during an outage fires once.
* **Fire.** A firing creates a training run from the schedule's frozen
  configuration through the training services, named as the registered
  model (so it becomes its next version). While the previous firing's run is
  still going the overlap policy decides: skip (recorded, with the reason),
  queue (it waits, and fires once that run has ended), or cancel the previous run.
* **Settle.** Once a fired run ends, its firing takes the outcome and the
  schedule's statistics move; N failures in a row pause the schedule, with the reason.
* **Act.** A blessed run whose schedule says push (and deploy) is marked
  *pending* on its firing, in the same UPDATE that settles it, and not acted on
  in the tick: the worker takes it, one model at a time, in a child process,
  and a deploy goes through the background deploy jobs (:mod:`.actions`); the
  tick records how that deploy ended (:func:`.actions.follow_deploys`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import F

from ml_pipeline.errors import ConfigError, DataError
from ml_platform.audit import services as audit
from ml_platform.core import clock
from ml_platform.core.errors import DomainError
from ml_platform.schedules import actions, freshness, notifications
from ml_platform.schedules.models import (
    ActionState,
    FiringStatus,
    FiringTrigger,
    NotifyEvent,
    OnBlessed,
    OverlapPolicy,
    ScheduleFiring,
    ScheduleStatus,
    ScheduleType,
    TrainingSchedule,
)
from ml_platform.training import services as training_services
from ml_platform.training.models import TrainingRun

logger = logging.getLogger(__name__)

SCHEDULER = audit.Actor("scheduler", audit.Via.SYSTEM)
CLAIMS_PER_TICK = 20
# A claim whose run was never created (its scheduler died in between) is written off after this long.
CLAIM_STALE_AFTER = timedelta(minutes=5)
RUN_OUTCOMES = {
    TrainingRun.COMPLETED: FiringStatus.SUCCEEDED,
    TrainingRun.NOT_BLESSED: FiringStatus.NOT_BLESSED,
    TrainingRun.FAILED: FiringStatus.FAILED,
    TrainingRun.CANCELLED: FiringStatus.CANCELLED,
}


def tick(fired_by: str = "worker", now: datetime | None = None) -> int:
    """One round: write off lost claims, settle what ended (so a firing sees its predecessor's outcome), fire
    what is due; how many things happened."""
    now = now or clock.now()
    done = _write_off_lost_claims(now) + settle(now) + release_queued() + actions.follow_deploys()
    for firing in claim_due(fired_by, now):
        fire(firing)
        done += 1
    return done + notifications.deliver_due(now)


# --------------------------------------------------------------------------- claim


def _locked(queryset):
    """``FOR UPDATE SKIP LOCKED`` where the database has it (PostgreSQL); elsewhere the guarded UPDATE suffices."""
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True)
    return queryset


def claim_due(fired_by: str, now: datetime) -> list[ScheduleFiring]:
    """Claim every active schedule whose next run is due, each occurrence once (see :func:`take`)."""
    due = TrainingSchedule.objects.filter(status=ScheduleStatus.ACTIVE, next_run_at__lte=now)
    ids = list(due.order_by("next_run_at").values_list("pk", flat=True)[:CLAIMS_PER_TICK])
    return [firing for schedule_id in ids if (firing := claim(schedule_id, fired_by, now))]


def claim(schedule_id: int, fired_by: str, now: datetime) -> ScheduleFiring | None:
    """Claim one schedule's due occurrence (None when it is not due, or someone else has it)."""
    with transaction.atomic():
        due = TrainingSchedule.objects.filter(pk=schedule_id, status=ScheduleStatus.ACTIVE, next_run_at__lte=now)
        schedule = _locked(due).first()
        return take(schedule, fired_by, now) if schedule else None


def fire_due(schedule_id: int, fired_by: str) -> ScheduleFiring | None:
    """What an external scheduler's call does (webhook.py): the same claim as the worker's tick, then fire."""
    firing = claim(schedule_id, fired_by, clock.now())
    return fire(firing) if firing else None


def take(schedule: TrainingSchedule, fired_by: str, now: datetime) -> ScheduleFiring | None:
    """Own ``schedule``'s occurrence as read (its ``next_run_at``), or None when someone else already did.

    The one place an occurrence changes hands: the UPDATE matches only while
    ``next_run_at`` still is the occurrence read, so of two claimers that read
    the same row exactly one wins. A once completes here; a recurring schedule
    moves on to its first occurrence after ``now``.
    """
    occurrence = schedule.next_run_at
    if occurrence is None or occurrence > now:
        return None
    moved = {"next_run_at": None if schedule.schedule_type == ScheduleType.ONCE else _following(schedule, now)}
    if schedule.schedule_type == ScheduleType.ONCE:
        moved["status"] = ScheduleStatus.COMPLETED
    with transaction.atomic():
        won = TrainingSchedule.objects.filter(
            pk=schedule.pk, status=ScheduleStatus.ACTIVE, next_run_at=occurrence
        ).update(last_run_at=now, updated_at=now, **moved)
        if not won:
            return None
        try:
            with transaction.atomic():
                return ScheduleFiring.objects.create(
                    schedule_id=schedule.pk, scheduled_for=occurrence, fired_by=fired_by[:100], created_at=now
                )
        except IntegrityError:  # an external scheduler's webhook recorded this occurrence first
            return None


def _following(schedule: TrainingSchedule, now: datetime) -> datetime | None:
    return schedule.recurrence().first_after(now)


def _write_off_lost_claims(now: datetime) -> int:
    lost = ScheduleFiring.objects.filter(status=FiringStatus.CLAIMED, created_at__lt=now - CLAIM_STALE_AFTER)
    if not lost.exists():  # a read: the tick runs every second, and an idle tick takes no write lock
        return 0
    return lost.update(status=FiringStatus.FAILED, reason="its scheduler stopped before the run was created")


# --------------------------------------------------------------------------- fire


def trigger_now(schedule: TrainingSchedule, user) -> ScheduleFiring:
    """A run now, besides the schedule's own occurrences (whose times do not move)."""
    now = clock.now()
    firing = ScheduleFiring.objects.create(
        schedule=schedule,
        trigger=FiringTrigger.MANUAL,
        scheduled_for=now,
        fired_by=user.get_username() if user else "scheduler",
        created_at=now,
    )
    return fire(firing)


def fire(firing: ScheduleFiring) -> ScheduleFiring:
    """Create the firing's run (or skip it, or record why it could not start); the firing as it ends up."""
    schedule = TrainingSchedule.objects.select_related("registered_model", "project", "created_by").get(
        pk=firing.schedule_id
    )
    signature = freshness.data_signature(schedule, firing.scheduled_for)
    if firing.trigger == FiringTrigger.OCCURRENCE and (unchanged := freshness.unchanged_since(schedule, signature)):
        return _skip(firing, schedule, unchanged)
    ScheduleFiring.objects.filter(pk=firing.pk).update(data_signature=signature or {})
    previous = _still_going(schedule, firing)
    if previous is not None:
        if schedule.overlap_policy == OverlapPolicy.SKIP:
            return _skip(firing, schedule, f"{previous} was still {previous.get_status_display().lower()}")
        if schedule.overlap_policy == OverlapPolicy.QUEUE:
            return _queue(firing, schedule, previous)
        if schedule.overlap_policy == OverlapPolicy.CANCEL_PREVIOUS:
            training_services.request_cancel(previous)
    try:
        run = training_services.create_training_run(
            schedule.project,
            schedule.created_by,
            name=schedule.registered_model.name,
            description=schedule.registered_model.description,
            dataset_id=schedule.dataset_id,
            feature_config_id=schedule.feature_config_id,
            model_config_id=schedule.model_config_id,
            split_config=schedule.split_config,
            training_params=schedule.training_params,
            gpu_config=schedule.gpu_config,
            evaluator_config=schedule.evaluator_config,
            schedule_config={
                "schedule_type": schedule.schedule_type,
                "timezone": schedule.schedule_timezone,
                "scheduler_job_id": f"schedule-{schedule.pk}",
                "scheduled_for": firing.scheduled_for.isoformat(),  # where a relative data window ends
            },
        )
    except (ConfigError, DataError) as error:
        return _not_started(firing, schedule, "; ".join(f"{p.field}: {p.message}" for p in error.problems))
    except DomainError as error:
        return _not_started(firing, schedule, error.message)
    except Exception as error:  # noqa: BLE001 (one schedule's trouble must not stop the others)
        logger.exception("schedule %s: its run could not be created", schedule.pk)
        return _not_started(firing, schedule, f"the run could not be created: {type(error).__name__}")
    ScheduleFiring.objects.filter(pk=firing.pk).update(run=run, status=FiringStatus.RUNNING)
    TrainingSchedule.objects.filter(pk=schedule.pk).update(total_runs=F("total_runs") + 1, last_run_at=clock.now())
    audit.record(
        SCHEDULER,
        audit.Action.CREATE,
        run,
        changes={"schedule": schedule.pk, "scheduled_for": firing.scheduled_for.isoformat()},
    )
    logger.info("schedule %s fired: run %s (%s)", schedule.pk, run.pk, firing.scheduled_for)
    firing.refresh_from_db()
    return firing


def _still_going(schedule: TrainingSchedule, firing: ScheduleFiring) -> TrainingRun | None:
    going = (
        ScheduleFiring.objects.filter(schedule=schedule, status=FiringStatus.RUNNING, run__isnull=False)
        .exclude(pk=firing.pk)
        .exclude(run__status__in=TrainingRun.TERMINAL)
        .select_related("run")
        .order_by("-created_at")
        .first()
    )
    return going.run if going else None


def _queue(firing: ScheduleFiring, schedule: TrainingSchedule, previous: TrainingRun) -> ScheduleFiring:
    """Wait for ``previous`` to end (:func:`release_queued` fires it then); one waiting occurrence at a time."""
    waiting = ScheduleFiring.objects.filter(schedule=schedule, status=FiringStatus.QUEUED).exclude(pk=firing.pk)
    if waiting.exists():
        return _skip(firing, schedule, f"an earlier occurrence is already waiting for {previous}")
    ScheduleFiring.objects.filter(pk=firing.pk).update(status=FiringStatus.QUEUED, reason=f"waiting for {previous}")
    firing.refresh_from_db()
    return firing


def release_queued() -> int:
    """Fire each waiting occurrence whose schedule's previous run has ended (claimed first: fired once)."""
    released = 0
    for firing in ScheduleFiring.objects.filter(status=FiringStatus.QUEUED).order_by("scheduled_for", "id"):
        schedule = TrainingSchedule.objects.get(pk=firing.schedule_id)
        if _still_going(schedule, firing) is not None:
            continue
        if ScheduleFiring.objects.filter(pk=firing.pk, status=FiringStatus.QUEUED).update(
            status=FiringStatus.CLAIMED, reason=""
        ):
            fire(firing)
            released += 1
    return released


def _skip(firing: ScheduleFiring, schedule: TrainingSchedule, reason: str) -> ScheduleFiring:
    now = clock.now()
    ScheduleFiring.objects.filter(pk=firing.pk).update(status=FiringStatus.SKIPPED, reason=reason, settled_at=now)
    TrainingSchedule.objects.filter(pk=schedule.pk).update(skipped_runs=F("skipped_runs") + 1)
    firing.refresh_from_db()
    return firing


def _not_started(firing: ScheduleFiring, schedule: TrainingSchedule, reason: str) -> ScheduleFiring:
    ScheduleFiring.objects.filter(pk=firing.pk).update(
        status=FiringStatus.FAILED, reason=f"not started: {reason}", settled_at=clock.now()
    )
    TrainingSchedule.objects.filter(pk=schedule.pk).update(total_runs=F("total_runs") + 1)
    notifications.notify(
        schedule, NotifyEvent.RUN_FAILED, f"{schedule.name}: a run could not start", {"reason": reason}
    )
    _count_failure(schedule.pk, f"not started: {reason}")
    firing.refresh_from_db()
    return firing


# --------------------------------------------------------------------------- settle


def settle(now: datetime | None = None) -> int:
    """Give each firing whose run ended its outcome, once (guarded), and act on it; how many were settled."""
    now = now or clock.now()
    going = ScheduleFiring.objects.filter(status=FiringStatus.RUNNING).select_related("run", "schedule")
    settled = 0
    for firing in going.order_by("created_at", "id"):
        run = firing.run
        if run is not None and not run.is_terminal:
            continue
        outcome = RUN_OUTCOMES[run.status] if run else FiringStatus.FAILED
        reason = run.error_message if run else "its run was deleted"
        wanted = outcome == FiringStatus.SUCCEEDED and run.blessed and firing.schedule.on_blessed != OnBlessed.NOTHING
        if not ScheduleFiring.objects.filter(pk=firing.pk, status=FiringStatus.RUNNING).update(
            status=outcome,
            reason=reason or "",
            settled_at=now,
            action_state=ActionState.PENDING if wanted else ActionState.NONE,  # with the outcome: never lost
        ):
            continue  # another worker settled it
        settled += 1
        if outcome in (FiringStatus.SUCCEEDED, FiringStatus.NOT_BLESSED):
            TrainingSchedule.objects.filter(pk=firing.schedule_id).update(
                successful_runs=F("successful_runs") + 1, consecutive_failures=0
            )
        elif outcome == FiringStatus.FAILED:
            TrainingSchedule.objects.filter(pk=firing.schedule_id).update(failed_runs=F("failed_runs") + 1)
            _count_failure(firing.schedule_id, reason or "the run failed")
        if outcome in (FiringStatus.FAILED, FiringStatus.NOT_BLESSED):
            _notify_outcome(firing, run, outcome, reason)
    return settled


def _notify_outcome(firing: ScheduleFiring, run: TrainingRun | None, outcome: str, reason: str) -> None:
    schedule = TrainingSchedule.objects.select_related("registered_model").get(pk=firing.schedule_id)
    label = str(run) if run else "its run"
    if outcome == FiringStatus.NOT_BLESSED:
        why = "; ".join(run.blessing_reasons) if run else ""
        notifications.notify(
            schedule, NotifyEvent.NOT_BLESSED, f"{label} was not blessed", {"run_id": run.pk, "reasons": why}
        )
    else:
        notifications.notify(
            schedule,
            NotifyEvent.RUN_FAILED,
            f"{label} of {schedule.name} failed",
            {"run_id": run.pk if run else None, "reason": reason},
        )


def _count_failure(schedule_id: int, reason: str) -> None:
    """One more failure in a row; at the schedule's limit it pauses itself, saying why."""
    TrainingSchedule.objects.filter(pk=schedule_id).update(consecutive_failures=F("consecutive_failures") + 1)
    schedule = TrainingSchedule.objects.get(pk=schedule_id)
    limit = schedule.max_consecutive_failures
    if limit and schedule.consecutive_failures >= limit and schedule.status == ScheduleStatus.ACTIVE:
        text = f"Paused after {schedule.consecutive_failures} failed runs in a row; the last: {reason}"
        if TrainingSchedule.objects.filter(pk=schedule_id, status=ScheduleStatus.ACTIVE).update(
            status=ScheduleStatus.PAUSED, next_run_at=None, status_reason=text[:500]
        ):
            audit.record(SCHEDULER, audit.Action.SCHEDULE_UPDATE, schedule, changes={"status": "paused"})
            notifications.notify(schedule, NotifyEvent.AUTO_PAUSED, f"{schedule.name} paused itself", {"reason": text})
            logger.warning("schedule %s paused itself: %s", schedule_id, text)
