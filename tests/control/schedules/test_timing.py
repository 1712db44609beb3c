"""When schedules fire, in their own zone, across DST transitions, month ends and leap years (no database).

Each case: a recurrence, the instant we stand at, and the next fire times expected, written as local wall
times with their UTC offset so the DST behaviour reads off the table.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from ml_platform.schedules import timing
from ml_platform.schedules.timing import Recurrence

WARSAW, NEW_YORK = "Europe/Warsaw", "America/New_York"


def local(zone: str, text: str) -> datetime:
    """'2025-03-30 03:00' in ``zone``, as an aware instant (fold 0: the first of a repeated hour)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def fires(recurrence: Recurrence, after: datetime, count: int = 4) -> list[str]:
    """The next fire times, each as 'YYYY-MM-DD HH:MM+HH:MM' in the recurrence's zone."""
    tz = ZoneInfo(recurrence.timezone)
    return [t.astimezone(tz).isoformat(sep=" ", timespec="minutes") for t in recurrence.upcoming(after, count)]


# Spring forward: Warsaw 2025-03-30 02:00 -> 03:00; New York 2025-03-09 02:00 -> 03:00.
def test_a_daily_time_the_zone_skips_fires_at_the_first_valid_instant_after_it():
    daily = Recurrence("daily", WARSAW, time(2, 30))
    assert fires(daily, local(WARSAW, "2025-03-29 12:00"), 3) == [
        "2025-03-30 03:00+02:00",
        "2025-03-31 02:30+02:00",
        "2025-04-01 02:30+02:00",
    ]


def test_a_weekly_time_in_new_yorks_spring_gap_fires_at_three():
    sunday = Recurrence("weekly", NEW_YORK, time(2, 15), day_of_week=6)
    assert fires(sunday, local(NEW_YORK, "2025-03-03 00:00"), 2) == [
        "2025-03-09 03:00-04:00",
        "2025-03-16 02:15-04:00",
    ]


# Fall back: Warsaw 2025-10-26 03:00 -> 02:00; New York 2025-11-02 02:00 -> 01:00.
def test_a_daily_time_that_happens_twice_fires_once():
    daily = Recurrence("daily", WARSAW, time(2, 30))
    assert fires(daily, local(WARSAW, "2025-10-25 12:00"), 3) == [
        "2025-10-26 02:30+02:00",
        "2025-10-27 02:30+01:00",
        "2025-10-28 02:30+01:00",
    ]


def test_new_yorks_repeated_hour_fires_a_daily_schedule_once():
    daily = Recurrence("daily", NEW_YORK, time(1, 30))
    assert fires(daily, local(NEW_YORK, "2025-11-01 12:00"), 2) == ["2025-11-02 01:30-04:00", "2025-11-03 01:30-05:00"]


def test_an_hourly_schedule_fires_every_real_hour_through_both_transitions():
    hourly = Recurrence("hourly", WARSAW, time(0, 15))
    assert fires(hourly, local(WARSAW, "2025-03-30 01:00"), 2) == ["2025-03-30 01:15+01:00", "2025-03-30 03:15+02:00"]
    assert fires(hourly, local(WARSAW, "2025-10-26 01:30"), 3) == [
        "2025-10-26 02:15+02:00",
        "2025-10-26 02:15+01:00",
        "2025-10-26 03:15+01:00",
    ]


def test_utc_has_no_transitions():
    daily = Recurrence("daily", "UTC", time(2, 30))
    assert fires(daily, datetime(2025, 3, 29, 12, tzinfo=UTC), 2) == [
        "2025-03-30 02:30+00:00",
        "2025-03-31 02:30+00:00",
    ]


def test_a_fire_time_is_stored_in_utc():
    (first,) = Recurrence("daily", WARSAW, time(9, 0)).upcoming(datetime(2025, 7, 1, tzinfo=UTC), 1)
    assert first == datetime(2025, 7, 1, 7, 0, tzinfo=UTC) and first.tzinfo is UTC


def test_monthly_on_the_31st_skips_months_without_one():
    monthly = Recurrence("monthly", WARSAW, time(9, 0), day_of_month=31)
    assert fires(monthly, local(WARSAW, "2025-01-05 00:00"), 4) == [
        "2025-01-31 09:00+01:00",
        "2025-03-31 09:00+02:00",
        "2025-05-31 09:00+02:00",
        "2025-07-31 09:00+02:00",
    ]


def test_monthly_on_the_29th_fires_in_february_of_a_leap_year_only():
    monthly = Recurrence("monthly", "UTC", time(6, 0), day_of_month=29)
    assert fires(monthly, datetime(2027, 1, 30, tzinfo=UTC), 2) == ["2027-03-29 06:00+00:00", "2027-04-29 06:00+00:00"]
    assert fires(monthly, datetime(2028, 1, 30, tzinfo=UTC), 1) == ["2028-02-29 06:00+00:00"]


def test_the_preview_of_a_monthly_schedule_on_the_31st_names_the_months_it_skips():
    monthly = Recurrence("monthly", WARSAW, time(9, 0), day_of_month=31)
    _, notes = timing.preview(monthly, datetime(2025, 1, 5, tzinfo=UTC))
    assert notes == ["Days 29-31 may be skipped in shorter months: February 2025, April 2025, June 2025 are skipped"]


def test_the_preview_says_when_a_time_does_not_exist_that_day():
    daily = Recurrence("daily", WARSAW, time(2, 30))
    times, _ = timing.preview(daily, datetime(2025, 3, 29, 12, tzinfo=UTC), 2)
    assert times[0].note == "02:30 does not exist that day (clocks go forward): runs at 03:00"
    assert times[1].note == ""


def test_a_once_fires_once_at_its_local_time():
    once = Recurrence("once", NEW_YORK, once_at=datetime(2025, 6, 1, 14, 0))
    assert fires(once, datetime(2025, 3, 1, tzinfo=UTC), 5) == ["2025-06-01 14:00-04:00"]


def test_a_once_in_a_spring_gap_fires_at_the_first_valid_instant_after_it():
    once = Recurrence("once", WARSAW, once_at=datetime(2025, 3, 30, 2, 30))
    assert fires(once, datetime(2025, 3, 1, tzinfo=UTC)) == ["2025-03-30 03:00+02:00"]


def test_a_once_whose_time_has_passed_has_no_fire_time():
    once = Recurrence("once", "UTC", once_at=datetime(2025, 3, 1, 9, 0))
    assert once.first_after(datetime(2025, 3, 1, 9, 0, tzinfo=UTC)) is None
    assert once.problems(datetime(2025, 3, 2, tzinfo=UTC)) == [("scheduled_datetime", "is in the past")]


def test_weekly_counts_monday_as_zero():
    monday = Recurrence("weekly", "UTC", time(9, 0), day_of_week=0)
    assert monday.cron() == "0 9 * * 1"
    assert fires(monday, datetime(2025, 3, 14, tzinfo=UTC), 1) == ["2025-03-17 09:00+00:00"]  # a Friday -> Monday


@pytest.mark.parametrize(
    ("recurrence", "field"),
    [
        (Recurrence("daily", "Mars/Olympus", time(9, 0)), "schedule_timezone"),
        (Recurrence("daily", "", time(9, 0)), "schedule_timezone"),
        (Recurrence("daily", "../../etc/passwd", time(9, 0)), "schedule_timezone"),
        (Recurrence("hourly", "UTC", time(0, 7)), "schedule_time"),
        (Recurrence("daily", "UTC"), "schedule_time"),
        (Recurrence("weekly", "UTC", time(9, 0)), "schedule_day_of_week"),
        (Recurrence("monthly", "UTC", time(9, 0), day_of_month=32), "schedule_day_of_month"),
        (Recurrence("once", "UTC"), "scheduled_datetime"),
    ],
)
def test_each_bad_field_is_named(recurrence, field):
    assert [name for name, _ in recurrence.problems(datetime(2025, 3, 14, tzinfo=UTC))] == [field]


@pytest.mark.parametrize(
    ("recurrence", "words"),
    [
        (Recurrence("hourly", "UTC", time(0, 30)), "Hourly at :30 (UTC)"),
        (Recurrence("weekly", WARSAW, time(9, 0), day_of_week=0), "Weekly on Monday at 09:00 (Europe/Warsaw)"),
        (Recurrence("monthly", WARSAW, time(9, 0), day_of_month=15), "Monthly on the 15th at 09:00 (Europe/Warsaw)"),
    ],
)
def test_a_schedule_in_words(recurrence, words):
    assert recurrence.describe() == words
