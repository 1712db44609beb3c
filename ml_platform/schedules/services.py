"""Training schedules: create (from a run or a registered model), edit, pause, resume, cancel, delete, preview.

The rules live here; firing is :mod:`ml_platform.schedules.scheduler`'s.
One schedule per registered model. A schedule's training configuration is
frozen when it is made (the catalog objects and parameters of its source
run); every firing trains exactly that. ``next_run_at`` is always computed by
:mod:`timing` in the schedule's zone, from the clock (``core.clock.now``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, time

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import IntegrityError, transaction

from ml_pipeline.errors import Problem
from ml_platform.core import clock
from ml_platform.core.errors import Conflict, Invalid
from ml_platform.projects.models import Project
from ml_platform.registry.models import RegisteredModel
from ml_platform.schedules import backends, outbound, timing
from ml_platform.schedules.models import (
    NotificationTarget,
    OnBlessed,
    OverlapPolicy,
    ScheduleStatus,
    TrainingSchedule,
)
from ml_platform.training.models import TrainingRun


@dataclass(frozen=True)
class ScheduleFields:
    """What a person chooses about a schedule (the dialog's fields, the API's body)."""

    name: str
    schedule_type: str
    schedule_timezone: str = "UTC"
    description: str = ""
    schedule_time: time | None = None
    schedule_day_of_week: int | None = None
    schedule_day_of_month: int | None = None
    scheduled_datetime: datetime | None = None  # naive: wall time in the zone; aware: that instant
    on_blessed: str = OnBlessed.NOTHING
    overlap_policy: str = OverlapPolicy.SKIP
    max_consecutive_failures: int = 3

    def recurrence(self) -> timing.Recurrence:
        once_at = self.scheduled_datetime
        if once_at is not None and once_at.tzinfo is not None:
            try:
                once_at = once_at.astimezone(timing.zone(self.schedule_timezone)).replace(tzinfo=None)
            except (ValueError, OverflowError):  # the zone's problem, or a date at the end of time: both reported
                once_at = once_at.replace(tzinfo=None)
        return timing.Recurrence(
            schedule_type=self.schedule_type,
            timezone=self.schedule_timezone,
            at_time=self.schedule_time,
            day_of_week=self.schedule_day_of_week,
            day_of_month=self.schedule_day_of_month,
            once_at=once_at,
        )


def checked(fields: ScheduleFields, named: bool = True) -> timing.Recurrence:
    """The recurrence, or Invalid naming every bad field (``named``: the name is required too)."""
    problems = [Problem(field, message) for field, message in fields.recurrence().problems(clock.now())]
    if named and not fields.name.strip():
        problems.append(Problem("name", "required"))
    if problems:
        raise Invalid(problems, "Invalid schedule")
    return fields.recurrence()


def duplicate_message(registered: RegisteredModel, existing: TrainingSchedule) -> str:
    return (
        f"Model '{registered.name}' already has a schedule (ID: {existing.pk}). Each model can only have one schedule."
    )


def existing_schedule(registered: RegisteredModel) -> TrainingSchedule | None:
    return TrainingSchedule.objects.filter(registered_model=registered).first()


def _columns(fields: ScheduleFields, recurrence: timing.Recurrence) -> dict:
    """The model's columns for ``fields``: the once's wall time becomes its instant (after a DST gap: the first
    valid one), the other types drop the fields they do not use."""
    columns = {k: v for k, v in asdict(fields).items() if k != "scheduled_datetime"}
    columns["name"] = fields.name.strip()
    columns["scheduled_datetime"] = recurrence.first_after(clock.now()) if recurrence.schedule_type == "once" else None
    kind = recurrence.schedule_type
    if kind == "once":
        columns["schedule_time"] = None
    elif kind == "hourly":
        columns["schedule_time"] = time(0, fields.schedule_time.minute)
    if kind != "weekly":
        columns["schedule_day_of_week"] = None
    if kind != "monthly":
        columns["schedule_day_of_month"] = None
    return columns


# --------------------------------------------------------------------------- the frozen configuration


def template_run(registered: RegisteredModel) -> TrainingRun:
    """The run a model's schedule copies: its newest completed training run, else its newest training run."""
    versions = TrainingRun.objects.filter(registered_model=registered, kind=TrainingRun.TRAINING)
    found = versions.filter(status=TrainingRun.COMPLETED).first() or versions.first()
    if found is None:
        raise Conflict(f"Model '{registered.name}' has no training run to copy its configuration from")
    return found


def frozen_configuration(run: TrainingRun, field: str = "source_training_run_id") -> dict:
    """What every firing of a schedule made from ``run`` trains: its catalog objects and parameters."""
    missing = [name for name in ("dataset", "feature_config", "model_config") if getattr(run, name) is None]
    if missing:
        raise Invalid(Problem(field, f"{run}'s {', '.join(m.replace('_', ' ') for m in missing)} was deleted"))
    return {
        "dataset": run.dataset,
        "feature_config": run.feature_config,
        "model_config": run.model_config,
        "source_run": run,
        "base_experiment": run.source_experiment,
        "split_config": run.split_config,
        "training_params": run.training_params,
        "gpu_config": run.gpu_config,
        "evaluator_config": run.evaluator_config,
    }


# --------------------------------------------------------------------------- create and edit


def create_from_run(run: TrainingRun, user, fields: ScheduleFields) -> TrainingSchedule:
    """A schedule for ``run``'s model (got or made from its name, and the run linked to it), copying ``run``."""
    if run.kind != TrainingRun.TRAINING:
        raise Invalid(Problem("source_training_run_id", "an experiment has no model to schedule; promote it first"))
    with transaction.atomic():
        registered = run.registered_model
        if registered is None:
            registered, _ = RegisteredModel.objects.get_or_create(
                project=run.project,
                name=run.name,
                defaults={"model_type": run.model_type, "description": run.description, "created_by": user},
            )
            TrainingRun.objects.filter(pk=run.pk).update(registered_model=registered)
        return create(registered, user, fields, frozen_configuration(run))


def create_for_model(registered: RegisteredModel, user, fields: ScheduleFields) -> TrainingSchedule:
    """A schedule for a registered model, copying its newest completed version's run."""
    return create(registered, user, fields, frozen_configuration(template_run(registered), "registered_model_id"))


def create(registered: RegisteredModel, user, fields: ScheduleFields, configuration: dict) -> TrainingSchedule:
    """Conflict (the spec's message) when the model has a schedule already, Invalid naming bad fields."""
    if existing := existing_schedule(registered):
        raise Conflict(duplicate_message(registered, existing))
    recurrence = checked(fields)
    schedule = TrainingSchedule(
        project=registered.project,
        registered_model=registered,
        created_by=user,
        **configuration,
        **_columns(fields, recurrence),
        next_run_at=recurrence.first_after(clock.now()),
    )
    try:
        with transaction.atomic():
            schedule.save()
    except IntegrityError:  # a concurrent creator got there first
        raise Conflict(duplicate_message(registered, existing_schedule(registered))) from None
    backends.current().saved(schedule)
    return schedule


def update(schedule: TrainingSchedule, fields: ScheduleFields) -> TrainingSchedule:
    """New timing or policies; the next run is recomputed from now (an active schedule's)."""
    if schedule.status in (ScheduleStatus.CANCELLED, ScheduleStatus.COMPLETED):
        raise Conflict(f"A {schedule.status} schedule cannot be edited")
    recurrence = checked(fields)
    for name, value in _columns(fields, recurrence).items():
        setattr(schedule, name, value)
    if schedule.status == ScheduleStatus.ACTIVE:
        schedule.next_run_at = recurrence.first_after(clock.now())
    schedule.save()
    backends.current().saved(schedule)
    return schedule


# --------------------------------------------------------------------------- status


def _move(schedule: TrainingSchedule, sources: tuple[str, ...], wanted: str, **fields) -> TrainingSchedule:
    """A guarded status change (a scheduler may be moving the same row), or Conflict naming where it is."""
    moved = TrainingSchedule.objects.filter(pk=schedule.pk, status__in=sources).update(
        status=wanted, updated_at=clock.now(), **fields
    )
    schedule.refresh_from_db()
    if not moved:
        raise Conflict(f"The schedule is {schedule.status}; it cannot become {wanted}")
    return schedule


def pause(schedule: TrainingSchedule, reason: str = "") -> TrainingSchedule:
    """Nothing fires while paused; what falls due meanwhile is not fired later."""
    _move(schedule, (ScheduleStatus.ACTIVE,), ScheduleStatus.PAUSED, next_run_at=None, status_reason=reason[:500])
    backends.current().paused(schedule)
    return schedule


def resume(schedule: TrainingSchedule) -> TrainingSchedule:
    """Active again from the next occurrence after now (a once whose time passed while paused cannot resume)."""
    upcoming = schedule.recurrence().first_after(clock.now())
    if upcoming is None:
        raise Conflict("Its one run was due while it was paused; make a new schedule instead")
    _move(
        schedule,
        (ScheduleStatus.PAUSED,),
        ScheduleStatus.ACTIVE,
        next_run_at=upcoming,
        status_reason="",
        consecutive_failures=0,
    )
    backends.current().resumed(schedule)
    return schedule


def cancel(schedule: TrainingSchedule) -> TrainingSchedule:
    """Stopped for good (kept, with its history); delete it to make another for the model."""
    _move(schedule, (ScheduleStatus.ACTIVE, ScheduleStatus.PAUSED), ScheduleStatus.CANCELLED, next_run_at=None)
    backends.current().deleted(schedule)
    return schedule


def check_triggerable(schedule: TrainingSchedule) -> None:
    """A cancelled schedule runs nothing, not even by hand."""
    if schedule.status == ScheduleStatus.CANCELLED:
        raise Conflict("The schedule is cancelled; it runs nothing")


def delete(schedule: TrainingSchedule) -> None:
    """The schedule and its firing history go; the runs it made stay (they are the model's versions)."""
    backends.current().deleted(schedule)
    schedule.delete()


# --------------------------------------------------------------------------- preview


@dataclass(frozen=True)
class Preview:
    description: str
    times: list[timing.FireTime]
    notes: list[str]
    timezone: str


def preview(fields: ScheduleFields, count: int = 5) -> Preview:
    """The next ``count`` fire times of a schedule not saved yet (Invalid naming bad fields)."""
    recurrence = checked(fields, named=False)
    times, notes = timing.preview(recurrence, clock.now(), count)
    return Preview(recurrence.describe(), times, notes, recurrence.timezone)


# --------------------------------------------------------------------------- notifications


def add_notification_target(owner: TrainingSchedule | Project, kind: str, address: str, events: list[str]):
    """An e-mail address or an http(s) URL told of the events (``events`` empty: all of them) of a schedule,
    or of every schedule of a project (``owner``)."""
    address = address.strip()
    try:
        if kind == NotificationTarget.EMAIL:
            validate_email(address)
        else:
            URLValidator(schemes=["http", "https"])(address)
    except ValidationError:
        wanted = "an e-mail address" if kind == NotificationTarget.EMAIL else "an http:// or https:// URL"
        raise Invalid(Problem("address", f"not {wanted}")) from None
    if kind == NotificationTarget.WEBHOOK:
        try:
            outbound.vet(address)  # and again at each send (notifications.py): DNS may change
        except outbound.Refused as refused:
            raise Invalid(Problem("address", str(refused))) from None
    owned = {"project": owner} if isinstance(owner, Project) else {"schedule": owner}
    return NotificationTarget.objects.create(kind=kind, address=address, events=sorted(set(events)), **owned)
