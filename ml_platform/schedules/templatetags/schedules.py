"""The Schedule buttons other pages place (a run's card, the Models table), and times in a schedule's zone."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from django import template
from django.urls import reverse

from ml_platform.schedules import timing
from ml_platform.schedules.models import TrainingSchedule
from ml_platform.training.models import TrainingRun

register = template.Library()

# A run whose configuration is worth repeating: it trained to the end.
SCHEDULABLE = (TrainingRun.COMPLETED, TrainingRun.NOT_BLESSED)


def _get(item, name: str):
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _schedule_of(model_id) -> TrainingSchedule | None:
    return TrainingSchedule.objects.filter(registered_model_id=model_id).first() if model_id else None


def _dialog_url(**source) -> str:
    return f"{reverse('schedule-new')}?{urlencode(source)}"


@register.inclusion_tag("schedules/_button.html")
def schedule_button(run) -> dict:
    """A finished training run's card: "Schedule" (opens the dialog), or its model's schedule when it has one."""
    schedule = _schedule_of(_get(run, "registered_model_id"))
    schedulable = _get(run, "kind") != TrainingRun.EXPERIMENT and _get(run, "status") in SCHEDULABLE
    return {"schedule": schedule, "show": schedulable, "url": _dialog_url(run=_get(run, "id")), "label": "Schedule"}


@register.inclusion_tag("schedules/_model_cell.html")
def schedule_cell(model) -> dict:
    """The Models table's Schedule column: Scheduled / Paused / None, the next run, and Create / View schedule."""
    schedule = _schedule_of(_get(model, "id"))
    return {"schedule": schedule, "url": _dialog_url(model=_get(model, "id"))}


@register.filter
def in_zone(instant: datetime | None, zone_name: str) -> str:
    """An instant as a wall time in ``zone_name``: "Mon 2025-03-17 09:00 CET" ("—" for none)."""
    if instant is None:
        return "—"
    return instant.astimezone(timing.zone(zone_name)).strftime("%a %Y-%m-%d %H:%M %Z")


@register.filter
def utc(instant: datetime | None) -> str:
    return "—" if instant is None else instant.astimezone(timing.zone("UTC")).strftime("%Y-%m-%d %H:%M UTC")
