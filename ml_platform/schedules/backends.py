"""Who wakes schedules up: the seam between the schedules' rules and the thing that keeps time.

The platform's own backend is ``embedded``: the worker's tick
(:func:`ml_platform.schedules.scheduler.tick`) finds due schedules in the
database, so nothing outside has to be told of a change. An external
scheduler (Cloud Scheduler, in the scale-out issue) is another
:class:`SchedulerBackend` that mirrors each schedule as a job of its own
(``schedule.backend_job_name``) from the same cron expression and zone
(``schedule.recurrence().cron()``, ``schedule.schedule_timezone``), and calls
back into the same claim the worker uses, so the two can never both fire
one occurrence. ``SCHEDULER_BACKEND`` picks one.
"""

from __future__ import annotations

from typing import Protocol

from django.conf import settings


class SchedulerBackend(Protocol):
    """Told of every change to a schedule, after it is saved."""

    name: str

    def saved(self, schedule) -> None:
        """Created or edited: (re)create its job."""

    def paused(self, schedule) -> None: ...

    def resumed(self, schedule) -> None: ...

    def deleted(self, schedule) -> None:
        """Cancelled or deleted: its job goes."""


class EmbeddedBackend:
    """The worker's tick reads the schedules table itself: nothing to mirror."""

    name = "embedded"

    def saved(self, schedule) -> None:
        pass

    def paused(self, schedule) -> None:
        pass

    def resumed(self, schedule) -> None:
        pass

    def deleted(self, schedule) -> None:
        pass


BACKENDS: dict[str, type] = {"embedded": EmbeddedBackend}


def current() -> SchedulerBackend:
    name = getattr(settings, "SCHEDULER_BACKEND", "embedded")
    if name not in BACKENDS:
        raise RuntimeError(f"SCHEDULER_BACKEND={name!r}: one of {', '.join(BACKENDS)}")
    return BACKENDS[name]()


def embedded() -> bool:
    """Whether the worker's tick fires schedules (with another backend, that backend's callbacks do)."""
    return current().name == "embedded"
