"""When a schedule fires: its recurrence as a cron expression, walked in its own time zone by cronsim.

Every type (``once`` included) is one cron expression evaluated in the
schedule's IANA zone; cronsim (healthchecks' cron engine) walks it with the
same rules as cron, so no date arithmetic is written here:

* a local time that does not exist (spring forward) fires at the first valid
  instant after it (02:30 on a night clocks jump 02:00 -> 03:00 fires at 03:00);
* a local time that happens twice (fall back) fires once, at its first
  occurrence; an hourly schedule fires every real hour, the repeated one too;
* a monthly day the month lacks (the 31st in April) is skipped, not moved.

Instants leave this module in UTC (what the database stores).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim

ONCE, HOURLY, DAILY, WEEKLY, MONTHLY = "once", "hourly", "daily", "weekly", "monthly"
TYPES = (ONCE, HOURLY, DAILY, WEEKLY, MONTHLY)
HOURLY_MINUTES = (0, 15, 30, 45)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")  # 0 = Monday
SHORT_MONTH_DAYS = (29, 30, 31)
SHORT_MONTHS_NOTE = "Days 29-31 may be skipped in shorter months"
MAX_YEARS_AHEAD = 100


@cache
def zone_names() -> tuple[str, ...]:
    """Every IANA zone name the system knows, sorted (the dialog's list)."""
    return tuple(sorted(available_timezones()))


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError for anything else ("Mars/Olympus", a path, an empty string)."""
    if name not in zone_names():
        raise ValueError(f"'{name}' is not an IANA time zone (e.g. UTC, Europe/Warsaw, America/New_York)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{name}' is not an IANA time zone") from None


@dataclass(frozen=True)
class Recurrence:
    """What a schedule says about time, checked (see :meth:`problems`) before it is used."""

    schedule_type: str
    timezone: str = "UTC"
    at_time: time | None = None  # hourly: only its minute; daily, weekly, monthly: the time of day
    day_of_week: int | None = None  # 0 = Monday
    day_of_month: int | None = None  # 1-31
    once_at: datetime | None = None  # naive: a wall-clock date and time in ``timezone``

    def problems(self, now: datetime) -> list[tuple[str, str]]:
        """(field, message) for each thing wrong; field names are the API's."""
        found = []
        try:
            zone(self.timezone)
        except ValueError as error:
            found.append(("schedule_timezone", str(error)))
        if self.schedule_type not in TYPES:
            return [*found, ("schedule_type", f"one of {', '.join(TYPES)}")]
        if self.schedule_type == ONCE:
            if self.once_at is None:
                found.append(("scheduled_datetime", "required for a once schedule"))
            elif not now.year <= self.once_at.year <= now.year + MAX_YEARS_AHEAD:
                found.append(("scheduled_datetime", f"within the next {MAX_YEARS_AHEAD} years"))
            elif not found and self.first_after(now) is None:
                found.append(("scheduled_datetime", "is in the past"))
            return found
        if self.at_time is None:
            found.append(("schedule_time", f"required for a {self.schedule_type} schedule (HH:MM)"))
        elif self.schedule_type == HOURLY and self.at_time.minute not in HOURLY_MINUTES:
            found.append(("schedule_time", "an hourly schedule runs at minute 00, 15, 30 or 45"))
        if self.schedule_type == WEEKLY and self.day_of_week is None:
            found.append(("schedule_day_of_week", "required for a weekly schedule (0 = Monday ... 6 = Sunday)"))
        elif self.day_of_week is not None and not 0 <= self.day_of_week <= 6:
            found.append(("schedule_day_of_week", "0 (Monday) to 6 (Sunday)"))
        if self.schedule_type == MONTHLY and self.day_of_month is None:
            found.append(("schedule_day_of_month", "required for a monthly schedule (1-31)"))
        elif self.day_of_month is not None and not 1 <= self.day_of_month <= 31:
            found.append(("schedule_day_of_month", "a day of the month, 1 to 31"))
        return found

    def cron(self) -> str:
        """The five-field cron expression (minute hour day month weekday), read in ``timezone``."""
        if self.schedule_type == ONCE:
            at = self.once_at
            return f"{at.minute} {at.hour} {at.day} {at.month} *"
        minute, hour = self.at_time.minute, self.at_time.hour
        if self.schedule_type == HOURLY:
            return f"{minute} * * * *"
        if self.schedule_type == DAILY:
            return f"{minute} {hour} * * *"
        if self.schedule_type == WEEKLY:
            return f"{minute} {hour} * * {(self.day_of_week + 1) % 7}"  # cron: 0 = Sunday
        return f"{minute} {hour} {self.day_of_month} * *"

    def first_after(self, instant: datetime) -> datetime | None:
        """The first fire time strictly after ``instant``, in UTC; None when there is none (a past once)."""
        local = instant.astimezone(zone(self.timezone))
        if self.schedule_type == ONCE:
            # The once's own day, from the minute before it starts: its time, or the first valid instant after
            # a time the zone skipped that day. A once that is over has no fire time left.
            day_start = datetime.combine(self.once_at.date(), time(0), tzinfo=local.tzinfo) - timedelta(minutes=1)
            fire = next(iter(CronSim(self.cron(), day_start))).astimezone(UTC)
            return fire if fire > instant else None
        return next(iter(CronSim(self.cron(), local))).astimezone(UTC)

    def upcoming(self, after: datetime, count: int = 5) -> list[datetime]:
        """The next ``count`` fire times after ``after`` (fewer for a once), in UTC."""
        times, cursor = [], after
        while len(times) < count and (fire := self.first_after(cursor)) is not None:
            times.append(fire)
            cursor = fire
            if self.schedule_type == ONCE:
                break
        return times

    def skips_short_months(self) -> bool:
        return self.schedule_type == MONTHLY and (self.day_of_month or 0) in SHORT_MONTH_DAYS

    def describe(self) -> str:
        """In words: "Weekly on Monday at 09:00 (Europe/Warsaw)"."""
        where = f"({self.timezone})"
        if self.schedule_type == ONCE:
            return f"Once on {self.once_at:%Y-%m-%d} at {self.once_at:%H:%M} {where}"
        if self.schedule_type == HOURLY:
            return f"Hourly at :{self.at_time.minute:02d} {where}"
        at = f"{self.at_time:%H:%M}"
        if self.schedule_type == DAILY:
            return f"Daily at {at} {where}"
        if self.schedule_type == WEEKLY:
            return f"Weekly on {WEEKDAYS[self.day_of_week]} at {at} {where}"
        return f"Monthly on the {ordinal(self.day_of_month)} at {at} {where}"


def ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


@dataclass(frozen=True)
class FireTime:
    """One upcoming fire time as the preview shows it: in the schedule's zone and in UTC."""

    at_utc: datetime
    at_local: datetime
    note: str = ""  # e.g. "03:00: 02:30 does not exist that day (clocks go forward)"


def preview(recurrence: Recurrence, after: datetime, count: int = 5) -> tuple[list[FireTime], list[str]]:
    """The next fire times with what is unusual about each, and notes about the schedule as a whole."""
    tz = zone(recurrence.timezone)
    times = []
    for fire in recurrence.upcoming(after, count):
        local = fire.astimezone(tz)
        times.append(FireTime(fire, local, _note(recurrence, local)))
    notes = []
    if recurrence.skips_short_months():
        skipped = _months_without(recurrence.day_of_month, times)
        notes.append(SHORT_MONTHS_NOTE + (f": {', '.join(skipped)} are skipped" if skipped else ""))
    return times, notes


def _note(recurrence: Recurrence, local: datetime) -> str:
    if recurrence.schedule_type == HOURLY or recurrence.at_time is None and recurrence.once_at is None:
        return ""
    wanted = recurrence.once_at.time() if recurrence.schedule_type == ONCE else recurrence.at_time
    if (local.hour, local.minute) != (wanted.hour, wanted.minute):
        return f"{wanted:%H:%M} does not exist that day (clocks go forward): runs at {local:%H:%M}"
    return ""


def _months_without(day: int, times: list[FireTime]) -> list[str]:
    """The months between the first and last fire time shown that have no day ``day``."""
    if len(times) < 2:
        return []
    first, last = times[0].at_local, times[-1].at_local
    months = []
    for index in range(first.year * 12 + first.month - 1, last.year * 12 + last.month):
        year, month = divmod(index, 12)
        if calendar.monthrange(year, month + 1)[1] < day:
            months.append(f"{calendar.month_name[month + 1]} {year}")
    return months
