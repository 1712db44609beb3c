"""The schedule endpoints: create (from a run, for a model), refusals naming their field, one schedule per
model, status changes, trigger, previews, history, project isolation and the audit trail."""

from __future__ import annotations

import pytest

from ml_platform.audit.models import AuditEvent
from ml_platform.schedules import scheduler
from ml_platform.training.models import TrainingRun
from tests.helpers import api_client_for, errors_by_field

WEEKLY = {
    "name": "Weekly recs retraining",
    "schedule_type": "weekly",
    "schedule_time": "09:00",
    "schedule_day_of_week": 0,
    "schedule_timezone": "Europe/Warsaw",
}


@pytest.fixture
def create(api, pending_run):
    """POST /schedules/from-run/ copying ``pending_run`` with WEEKLY changed by ``changes``; the answer."""

    def post(client=None, **changes):
        body = {"source_training_run_id": pending_run["id"], **WEEKLY, **changes}
        return (client or api).post("/api/schedules/from-run/", body)

    return post


@pytest.fixture
def weekly(time_travel, create):
    response = create()
    assert response.status_code == 201, response.content
    return response.json()


def test_a_schedule_from_a_run_fires_next_monday_at_nine_in_warsaw(weekly, pending_run):
    assert weekly["summary"] == "Weekly on Monday at 09:00 (Europe/Warsaw)"
    assert weekly["next_run_at"] == "2025-03-17T08:00:00Z"
    assert weekly["next_run_local"] == "2025-03-17T09:00:00+01:00"
    assert (weekly["registered_model_name"], weekly["status"]) == ("recs", "active")
    assert weekly["configuration"]["source_run_id"] == pending_run["id"]


def test_a_second_schedule_for_the_model_is_refused_with_its_id(weekly, create):
    response = create(name="another")
    assert response.status_code == 409
    assert response.json()["error"] == (
        f"Model 'recs' already has a schedule (ID: {weekly['id']}). Each model can only have one schedule."
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"schedule_timezone": "Mars/Olympus"}, "schedule_timezone"),
        ({"schedule_type": "monthly", "schedule_day_of_month": 32}, "schedule_day_of_month"),
        ({"schedule_type": "hourly", "schedule_time": "00:07"}, "schedule_time"),
        ({"schedule_type": "once", "scheduled_datetime": "2025-03-14T08:00:00"}, "scheduled_datetime"),
        ({"schedule_type": "weekly", "schedule_day_of_week": None}, "schedule_day_of_week"),
        ({"schedule_time": "25:00"}, "schedule_time"),
        ({"schedule_type": "fortnightly"}, "schedule_type"),
        ({"name": ""}, "name"),
    ],
)
def test_a_bad_field_is_refused_by_name(time_travel, create, changes, field):
    assert field in errors_by_field(create(**changes), 422)


def test_nothing_is_saved_when_refused(time_travel, create):
    create(schedule_timezone="Mars/Olympus")
    assert create().status_code == 201


def test_a_registered_model_gets_a_schedule_copying_its_newest_run(time_travel, api, project, pending_run):
    model_id = TrainingRun.objects.get(pk=pending_run["id"]).registered_model_id
    response = api.post(f"/api/projects/{project.id}/schedules/", {**WEEKLY, "registered_model_id": model_id})
    assert response.status_code == 201, response.content
    assert response.json()["configuration"]["source_run_id"] == pending_run["id"]
    registered = api.get(f"/api/registered-models/{model_id}/").json()
    assert registered["has_schedule"] is True


def test_the_project_lists_its_schedules(weekly, api, project):
    assert [s["id"] for s in api.get(f"/api/projects/{project.id}/schedules/").json()] == [weekly["id"]]


def test_pause_resume_and_cancel(weekly, api):
    url = f"/api/schedules/{weekly['id']}"
    paused = api.post(f"{url}/pause/").json()
    assert (paused["status"], paused["next_run_at"]) == ("paused", None)
    resumed = api.post(f"{url}/resume/").json()
    assert (resumed["status"], resumed["next_run_at"]) == ("active", "2025-03-17T08:00:00Z")
    assert api.post(f"{url}/cancel/").json()["status"] == "cancelled"
    assert errors_by_field(api.post(f"{url}/resume/"), 409) == {}


def test_editing_the_timing_moves_the_next_run(weekly, api):
    response = api.patch(
        f"/api/schedules/{weekly['id']}/", {**WEEKLY, "schedule_type": "daily", "schedule_time": "12:00"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["next_run_at"] == "2025-03-14T11:00:00Z"


def test_trigger_now_queues_a_run_of_the_model(weekly, api):
    history = api.post(f"/api/schedules/{weekly['id']}/trigger/").json()
    (firing,) = history["firings"]
    assert (firing["trigger"], firing["status"], firing["run_status"]) == ("manual", "running", "pending")
    assert TrainingRun.objects.get(pk=firing["run_id"]).name == "recs"


def test_the_history_says_whether_each_version_is_better(weekly, api):
    for recall in (0.30, 0.35, 0.33):  # run by hand: a scheduled occurrence would skip the unchanged data
        run = TrainingRun.objects.get(
            pk=api.post(f"/api/schedules/{weekly['id']}/trigger/").json()["firings"][-1]["run_id"]
        )
        run.transition(TrainingRun.RUNNING)
        run.transition(TrainingRun.COMPLETED, blessed=True, final_metrics={"recall_at_10": recall})
        scheduler.tick()
    history = api.get(f"/api/schedules/{weekly['id']}/history/").json()
    assert history["metric"] == "recall_at_10"
    assert [(f["value"], f["better"]) for f in history["firings"]] == [(0.30, None), (0.35, True), (0.33, False)]


def test_next_runs_of_an_unsaved_monthly_schedule_in_its_zone_and_utc(time_travel, api):
    body = {"schedule_type": "monthly", "schedule_time": "09:00", "schedule_day_of_month": 31}
    answer = api.post("/api/schedules/next-runs/", {**body, "schedule_timezone": "Europe/Warsaw"}).json()
    assert [t["at_local"] for t in answer["times"]][:2] == ["2025-03-31T09:00:00+02:00", "2025-05-31T09:00:00+02:00"]
    assert answer["times"][0]["at_utc"] == "2025-03-31T07:00:00Z"
    assert answer["notes"] == [
        "Days 29-31 may be skipped in shorter months: April 2025, June 2025, September 2025 are skipped"
    ]


def test_next_runs_refuses_an_unknown_zone_by_name(api):
    response = api.post(
        "/api/schedules/next-runs/",
        {"schedule_type": "daily", "schedule_time": "09:00", "schedule_timezone": "Mars/Olympus"},
    )
    assert "schedule_timezone" in errors_by_field(response, 422)


def test_the_source_preview_says_what_would_be_trained(api, pending_run, weekly):
    preview = api.get(f"/api/schedules/preview/?source_run_id={pending_run['id']}").json()
    assert (preview["source_run_name"], preview["has_schedule"], preview["schedule_id"]) == ("recs", True, weekly["id"])
    assert preview["dataset_name"] == "purchases"


def test_deleting_a_schedule_keeps_the_runs_it_made(weekly, api):
    fired = api.post(f"/api/schedules/{weekly['id']}/trigger/").json()["firings"][0]["run_id"]
    assert api.delete(f"/api/schedules/{weekly['id']}/").status_code == 204
    assert api.get(f"/api/schedules/{weekly['id']}/").status_code == 404
    assert TrainingRun.objects.filter(pk=fired).exists()


def test_every_change_is_in_the_audit_trail(weekly, api):
    url = f"/api/schedules/{weekly['id']}"
    api.post(f"{url}/pause/")
    api.delete(f"{url}/")
    actions = AuditEvent.objects.filter(object_type="schedules.trainingschedule", object_id=weekly["id"])
    assert sorted(actions.values_list("action", flat=True)) == ["schedule.create", "schedule.delete", "schedule.update"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", ""),
        ("get", "history/"),
        ("post", "pause/"),
        ("post", "trigger/"),
        ("delete", ""),
    ],
)
def test_an_outsider_gets_404_for_another_projects_schedule(weekly, oscar, method, path):
    response = getattr(api_client_for(oscar), method)(f"/api/schedules/{weekly['id']}/{path}")
    assert response.status_code == 404


def test_an_outsider_cannot_schedule_another_projects_run(time_travel, create, oscar):
    assert create(client=api_client_for(oscar)).status_code == 404


def test_an_outsider_lists_nothing_of_the_project(weekly, oscar, project):
    assert api_client_for(oscar).get(f"/api/projects/{project.id}/schedules/").status_code == 404


def test_the_run_forms_name_check_says_the_model_has_a_schedule(weekly, api, project):
    answer = api.get(f"/api/projects/{project.id}/registered-models/check-name/?name=recs").json()
    assert (answer["has_schedule"], answer["schedule_id"]) == (True, weekly["id"])
