"""A run a schedule started says so wherever runs are shown: its schedule and the occurrence it fired for,
read through the firing (the run has no column for it)."""

from __future__ import annotations

from datetime import timedelta

from ml_platform.schedules import scheduler


def fire(time_travel, schedule):
    time_travel.shift(timedelta(minutes=31))
    scheduler.tick()
    return schedule.firings.get()


def test_a_scheduled_run_names_its_schedule_and_occurrence_in_its_detail(time_travel, daily, api):
    firing = fire(time_travel, daily)
    shown = api.get(f"/api/training-runs/{firing.run_id}/").json()["schedule"]
    assert shown == {
        "id": daily.pk,
        "name": "recs retraining",
        "scheduled_for": "2025-03-14T10:00:00Z",
        "trigger": "occurrence",
    }


def test_a_scheduled_run_names_its_schedule_in_the_run_list(time_travel, daily, api, project, source_run):
    firing = fire(time_travel, daily)
    listed = {r["id"]: r["schedule"] for r in api.get(f"/api/projects/{project.pk}/training-runs/").json()["results"]}
    assert listed[firing.run_id]["name"] == "recs retraining"
    assert listed[source_run.pk] is None


def test_a_run_triggered_by_hand_says_so(daily, api, olivia):
    firing = scheduler.trigger_now(daily, olivia)
    assert api.get(f"/api/training-runs/{firing.run_id}/").json()["schedule"]["trigger"] == "manual"


def test_a_run_started_by_hand_has_no_schedule(api, source_run):
    assert api.get(f"/api/training-runs/{source_run.pk}/").json()["schedule"] is None
