"""The embedded scheduler: due schedules fire once per occurrence, whoever claims them, and their runs'
outcomes come back as statistics, pushes and pauses."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from ml_platform.core import clock
from ml_platform.schedules import scheduler, services
from ml_platform.schedules.models import FiringStatus, ScheduleFiring, ScheduleStatus, TrainingSchedule
from ml_platform.training.models import TrainingRun
from ml_platform.training.worker import Worker


def fired_runs(schedule) -> list[TrainingRun]:
    return [f.run for f in ScheduleFiring.objects.filter(schedule=schedule, run__isnull=False).order_by("id")]


def finish(run: TrainingRun, status=TrainingRun.COMPLETED, **fields) -> None:
    """The run ends as if a worker had executed it."""
    run.transition(TrainingRun.RUNNING)
    run.transition(status, **fields)


def test_a_due_schedule_fires_a_run_of_its_model(time_travel, daily, source_run):
    time_travel.shift(timedelta(minutes=31))
    scheduler.tick()
    (run,) = fired_runs(daily)
    assert (run.name, run.registered_model_id, run.status) == ("recs", source_run.registered_model_id, "pending")
    assert run.training_params == source_run.training_params
    assert run.schedule_config["scheduler_job_id"] == f"schedule-{daily.pk}"


def test_a_schedule_not_yet_due_does_not_fire(time_travel, daily):
    time_travel.shift(timedelta(minutes=29))
    assert scheduler.tick() == 0
    assert fired_runs(daily) == []


def test_after_firing_the_next_run_is_the_following_occurrence(time_travel, daily):
    time_travel.shift(timedelta(minutes=31))
    scheduler.tick()
    daily.refresh_from_db()
    assert daily.next_run_at == datetime(2025, 3, 15, 10, 0, tzinfo=UTC)
    assert (daily.total_runs, daily.last_run_at) == (1, clock.now())


def test_two_claimers_that_read_the_same_occurrence_fire_it_once(time_travel, daily):
    time_travel.shift(timedelta(minutes=31))
    read_by_one, read_by_other = TrainingSchedule.objects.get(pk=daily.pk), TrainingSchedule.objects.get(pk=daily.pk)
    won = scheduler.take(read_by_one, "worker-1", clock.now())
    lost = scheduler.take(read_by_other, "worker-2", clock.now())
    assert won is not None and lost is None
    assert ScheduleFiring.objects.filter(schedule=daily).count() == 1


def test_a_second_tick_finds_nothing_left_to_fire(time_travel, daily):
    time_travel.shift(timedelta(minutes=31))
    scheduler.tick("worker-1")
    scheduler.tick("worker-2")
    assert len(fired_runs(daily)) == 1


def test_after_a_three_hour_outage_an_hourly_schedule_fires_once(time_travel, make_schedule):
    hourly = make_schedule(schedule_type="hourly", schedule_time=time(0, 45))  # first due at 09:45
    time_travel.shift(timedelta(hours=3))  # 12:30: 09:45, 10:45 and 11:45 were missed
    scheduler.tick()
    scheduler.tick()
    (firing,) = ScheduleFiring.objects.filter(schedule=hourly)
    assert firing.scheduled_for == datetime(2025, 3, 14, 9, 45, tzinfo=UTC)
    hourly.refresh_from_db()
    assert hourly.next_run_at == datetime(2025, 3, 14, 12, 45, tzinfo=UTC)


def test_what_falls_due_while_paused_is_never_fired(time_travel, daily):
    services.pause(daily)
    time_travel.shift(timedelta(days=2))
    scheduler.tick()
    services.resume(daily)
    scheduler.tick()
    assert fired_runs(daily) == []
    assert daily.next_run_at == datetime(2025, 3, 16, 10, 0, tzinfo=UTC)  # not the 14th's or the 15th's


def test_a_once_completes_after_it_fires(time_travel, make_schedule):
    once = make_schedule(schedule_type="once", schedule_time=None, scheduled_datetime=datetime(2025, 3, 14, 11, 0))
    time_travel.shift(timedelta(hours=2))
    scheduler.tick()
    once.refresh_from_db()
    assert (once.status, once.next_run_at, len(fired_runs(once))) == (ScheduleStatus.COMPLETED, None, 1)


def test_an_occurrence_while_the_last_run_still_goes_is_skipped_with_the_reason(time_travel, daily):
    time_travel.shift(timedelta(minutes=31))
    scheduler.tick()
    time_travel.shift(timedelta(days=1))
    scheduler.tick()
    skipped = ScheduleFiring.objects.get(schedule=daily, status=FiringStatus.SKIPPED)
    assert skipped.reason == f"{fired_runs(daily)[0]} was still pending"
    daily.refresh_from_db()
    assert (daily.total_runs, daily.skipped_runs) == (1, 1)


def test_the_queue_policy_fires_the_occurrence_once_the_running_one_ends(time_travel, make_schedule):
    queued = make_schedule(overlap_policy="queue")
    time_travel.shift(timedelta(minutes=31))
    scheduler.tick()
    time_travel.shift(timedelta(days=1))
    scheduler.tick()
    waiting = ScheduleFiring.objects.get(schedule=queued, status=FiringStatus.QUEUED)
    assert waiting.reason == f"waiting for {fired_runs(queued)[0]}" and len(fired_runs(queued)) == 1
    # Failed: after a success on the same rows the waiting occurrence would be skipped for "no new data".
    finish(fired_runs(queued)[0], TrainingRun.FAILED, error_message="out of memory")
    scheduler.tick()
    waiting.refresh_from_db()
    assert waiting.status == FiringStatus.RUNNING and waiting.run.status == TrainingRun.PENDING


def test_a_run_that_ended_updates_its_schedules_statistics(time_travel, daily):
    time_travel.shift(timedelta(minutes=31))
    scheduler.tick()
    finish(fired_runs(daily)[0], blessed=True)
    scheduler.tick()
    daily.refresh_from_db()
    assert (daily.successful_runs, daily.failed_runs, daily.success_rate) == (1, 0, 100.0)
    assert ScheduleFiring.objects.get(schedule=daily).status == FiringStatus.SUCCEEDED


def test_three_failures_in_a_row_pause_the_schedule_saying_why(time_travel, daily):
    for _ in range(3):
        time_travel.shift(timedelta(days=1))
        scheduler.tick()
        finish(fired_runs(daily)[-1], TrainingRun.FAILED, error_message="Trainer ran out of memory")
        scheduler.tick()
    daily.refresh_from_db()
    assert (daily.status, daily.next_run_at, daily.failed_runs) == (ScheduleStatus.PAUSED, None, 3)
    assert daily.status_reason == "Paused after 3 failed runs in a row; the last: Trainer ran out of memory"


def test_a_run_that_cannot_even_be_created_is_a_failure_with_the_reason(time_travel, daily, purchases_csv):
    purchases_csv.unlink()
    time_travel.shift(timedelta(minutes=31))
    scheduler.tick()
    firing = ScheduleFiring.objects.get(schedule=daily)
    assert firing.status == FiringStatus.FAILED and firing.reason.startswith("not started: ")
    assert "purchases.csv" in firing.reason


def test_the_worker_fires_due_schedules(time_travel, daily):
    time_travel.shift(timedelta(minutes=31))
    Worker(max_concurrent=1).fire_schedules()
    assert len(fired_runs(daily)) == 1


def test_triggering_now_leaves_the_next_occurrence_where_it_was(time_travel, daily, olivia):
    firing = scheduler.trigger_now(daily, olivia)
    daily.refresh_from_db()
    assert (firing.trigger, firing.fired_by, firing.status) == ("manual", "olivia", FiringStatus.RUNNING)
    assert daily.next_run_at == datetime(2025, 3, 14, 10, 0, tzinfo=UTC)


def test_a_claim_whose_scheduler_died_before_making_its_run_is_written_off(time_travel, daily):
    time_travel.shift(timedelta(minutes=31))
    claimed = scheduler.take(TrainingSchedule.objects.get(pk=daily.pk), "worker-that-died", clock.now())
    time_travel.shift(scheduler.CLAIM_STALE_AFTER + timedelta(seconds=1))
    scheduler.tick()
    claimed.refresh_from_db()
    assert (claimed.status, claimed.reason) == ("failed", "its scheduler stopped before the run was created")
