"""A scheduled run's data window: "the last 7 days" ends at the occurrence it was fired for (not at the newest
row, nor at when the worker got to it), and an occurrence whose window holds nothing new since the last
successful run is skipped with the reason instead of trained again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from ml_pipeline.data import bigquery
from ml_platform.core import clock
from ml_platform.datasets.models import Dataset
from ml_platform.schedules import freshness, scheduler
from ml_platform.schedules.models import FiringStatus, FiringTrigger, ScheduleFiring, TrainingSchedule
from ml_platform.training.models import TrainingRun
from tests.bigquery_fake import TABLE, FakeBigQuery, table_described

# Six purchases in the week before the first occurrence (Friday 2025-03-14 10:00 UTC), one from before it.
RECENT_PURCHASES = """order_id,customer,item,ordered_at,qty,segment,category
1,c1,p1,2025-03-01 10:00:00,2,retail,tools
2,c1,p2,2025-03-07 11:00:00,1,retail,garden
3,c2,p1,2025-03-10 12:00:00,5,wholesale,tools
4,c2,p3,2025-03-11 13:00:00,3,wholesale,garden
5,c3,p3,2025-03-12 09:00:00,1,retail,garden
6,c3,p2,2025-03-13 09:00:00,2,retail,tools
7,c1,p3,2025-03-14 08:00:00,1,retail,garden
"""


@pytest.fixture
def last_week(purchases_csv, daily):
    """The daily schedule's dataset keeps the last 7 days of a file of recent purchases."""
    purchases_csv.write_text(RECENT_PURCHASES)
    Dataset.objects.filter(pk=daily.dataset_id).update(filters={"last_days": 7})
    return purchases_csv


def fired_runs(schedule) -> list[TrainingRun]:
    return [f.run for f in ScheduleFiring.objects.filter(schedule=schedule, run__isnull=False).order_by("id")]


def next_day(time_travel) -> None:
    """The schedule's next occurrence, ticked (and the run before it settled) a minute after it is due."""
    time_travel.shift(timedelta(days=1))
    scheduler.tick()


def train(run: TrainingRun) -> None:
    """The run ends blessed, as if a worker had executed it; the next tick settles its firing."""
    run.transition(TrainingRun.RUNNING)
    run.transition(TrainingRun.COMPLETED, blessed=True)


def test_a_scheduled_runs_window_ends_at_its_occurrence_not_when_the_worker_got_to_it(time_travel, last_week, daily):
    time_travel.shift(timedelta(hours=3, minutes=31))  # the worker was down: fired at 13:01 for 10:00
    scheduler.tick()
    (run,) = fired_runs(daily)
    assert run.spec["dataset"]["as_of"] == "2025-03-14T10:00:00"
    assert run.schedule_config["scheduled_for"] == "2025-03-14T10:00:00Z"
    firing = ScheduleFiring.objects.get(run=run)
    assert (firing.data_signature["rows"], firing.data_signature["as_of"]) == (6, "2025-03-14T10:00:00")


def test_a_daily_schedule_skips_a_day_whose_window_gained_no_rows_and_trains_once_rows_are_appended(
    time_travel, last_week, daily
):
    time_travel.shift(timedelta(minutes=31))
    scheduler.tick()
    (first,) = fired_runs(daily)
    train(first)

    next_day(time_travel)  # Saturday 10:00: the window moved a day, the file gained nothing
    skipped = ScheduleFiring.objects.get(schedule=daily, status=FiringStatus.SKIPPED)
    assert skipped.reason == (
        f"no new data since {first} (5 rows up to 2025-03-15 10:00:00, newest 2025-03-14T08:00:00)"
    )
    assert fired_runs(daily) == [first]

    with last_week.open("a") as appended:
        appended.write("8,c2,p2,2025-03-15 18:00:00,4,wholesale,tools\n")
    next_day(time_travel)  # Sunday 10:00
    assert len(fired_runs(daily)) == 2
    daily.refresh_from_db()
    assert (daily.total_runs, daily.skipped_runs) == (2, 1)


def test_a_row_dated_after_an_occurrence_is_new_data_for_the_next_one(time_travel, last_week, daily):
    with last_week.open("a") as appended:
        appended.write("8,c2,p2,2025-03-14 18:00:00,4,wholesale,tools\n")  # in the file, after 10:00
    time_travel.shift(timedelta(minutes=31))
    scheduler.tick()
    (first,) = fired_runs(daily)
    assert ScheduleFiring.objects.get(run=first).data_signature["rows"] == 6  # not in Friday's window
    train(first)
    next_day(time_travel)  # the file did not change, but Saturday's window holds the 18:00 row
    assert len(fired_runs(daily)) == 2


def test_a_manual_trigger_trains_even_without_new_data(time_travel, last_week, daily, olivia):
    time_travel.shift(timedelta(minutes=31))
    scheduler.tick()
    train(fired_runs(daily)[0])
    scheduler.tick()
    firing = scheduler.trigger_now(daily, olivia)
    assert firing.status == FiringStatus.RUNNING


def test_the_run_and_the_schedule_page_show_where_its_window_ends(time_travel, last_week, daily, api, olivia):
    time_travel.shift(timedelta(minutes=31))
    scheduler.tick()
    (run,) = fired_runs(daily)
    assert api.get(f"/api/training-runs/{run.pk}/").json()["data_window"] == {
        "last_days": 7,
        "ends_at": "2025-03-14T10:00:00Z",
    }
    browser = Client()
    browser.force_login(olivia)
    page = browser.get(f"/schedules/{daily.pk}/").content.decode()
    assert '<div class="muted data-window">6 rows · last 7 days to <time datetime="2025-03-14T10:00:00+00:00">' in page


@pytest.fixture
def warehouse(daily, monkeypatch):
    """The daily schedule's dataset is a BigQuery table (its last 7 days); the client is a fake."""
    client = FakeBigQuery()
    monkeypatch.setattr(bigquery, "make_client", lambda source: client)
    Dataset.objects.filter(pk=daily.dataset_id).update(
        source={"kind": "bigquery", "project": "my-project", "table": "shop.orders"},
        mapping={"buyer_id": "customer", "product_id": "item", "timestamp": "ordered_at"},
        filters={"last_days": 7},
    )
    daily.refresh_from_db()
    return client


def succeeded_before(schedule, when) -> ScheduleFiring:
    """A successful firing for ``when`` with what the source held then (a BigQuery run trains on Vertex AI,
    not here: its run is not made)."""
    return ScheduleFiring.objects.create(
        schedule=schedule,
        trigger=FiringTrigger.OCCURRENCE,
        scheduled_for=when,
        status=FiringStatus.SUCCEEDED,
        data_signature=freshness.data_signature(schedule, when),
        created_at=when,
        settled_at=when,
    )


def occurrence_status(time_travel, schedule) -> ScheduleFiring:
    time_travel.shift(timedelta(minutes=31))  # the next occurrence, Friday 10:00 UTC, ticked
    scheduler.tick()
    return ScheduleFiring.objects.filter(schedule=schedule, trigger=FiringTrigger.OCCURRENCE).latest("id")


def test_a_bigquery_source_whose_tables_are_unchanged_is_skipped(time_travel, warehouse, daily):
    previous = succeeded_before(daily, clock.now() - timedelta(days=1))
    assert previous.data_signature["source"].startswith("bigquery:")
    firing = occurrence_status(time_travel, daily)
    assert (firing.status, firing.reason) == (
        FiringStatus.SKIPPED,
        "no new data since the last successful run (its BigQuery tables unchanged up to 2025-03-14 10:00:00)",
    )


def test_a_bigquery_source_whose_table_changed_is_not_skipped(time_travel, warehouse, daily):
    succeeded_before(daily, clock.now() - timedelta(days=1))
    warehouse.tables[TABLE] = table_described(modified_ms=1_764_100_000_000, rows=3010)  # rows were loaded
    assert occurrence_status(time_travel, daily).status != FiringStatus.SKIPPED


def test_a_bigquery_source_out_of_reach_is_never_skipped(time_travel, warehouse, daily, monkeypatch):
    succeeded_before(daily, clock.now() - timedelta(days=1))

    def unreachable(source):
        raise bigquery.DataError("BigQuery cannot be reached: no credentials", field="source")

    monkeypatch.setattr(bigquery, "make_client", unreachable)
    assert occurrence_status(time_travel, daily).status != FiringStatus.SKIPPED


@pytest.fixture
def holdout(purchases_csv, daily):
    """The daily schedule splits the whole file of recent purchases by a 3-day time holdout (no window)."""
    purchases_csv.write_text(RECENT_PURCHASES)
    TrainingSchedule.objects.filter(pk=daily.pk).update(split_config={"strategy": "time_holdout", "holdout_days": 3})
    return purchases_csv


def test_a_scheduled_time_holdout_reads_the_data_as_of_its_occurrence(time_travel, holdout, daily):
    time_travel.shift(timedelta(hours=3, minutes=31))  # fired at 13:01 for 10:00
    scheduler.tick()
    (run,) = fired_runs(daily)
    assert (run.spec["split"]["strategy"], run.spec["dataset"]["as_of"]) == ("time_holdout", "2025-03-14T10:00:00")


def test_with_a_time_holdout_a_row_dated_after_an_occurrence_is_new_data_for_the_next_one(time_travel, holdout, daily):
    with holdout.open("a") as appended:
        appended.write("8,c2,p2,2025-03-14 18:00:00,4,wholesale,tools\n")  # in the file, after 10:00
    time_travel.shift(timedelta(minutes=31))
    scheduler.tick()
    (first,) = fired_runs(daily)
    assert ScheduleFiring.objects.get(run=first).data_signature["rows"] == 7  # what its run reads: none after 10:00
    train(first)
    next_day(time_travel)  # the file did not change, but Saturday's run reads the 18:00 row
    assert len(fired_runs(daily)) == 2
