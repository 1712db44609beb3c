"""The one place the control plane reads the time, so tests can move it (time-machine) and schedules share it."""

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    """The current time, aware, in UTC."""
    return timezone.now()
