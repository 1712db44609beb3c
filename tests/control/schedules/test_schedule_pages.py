"""The schedule dialog and page as the server renders them: the partials htmx swaps, refusals shown in the
form, a model that has a schedule, junk in the live panel's query, outsiders."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from ml_platform.audit.models import AuditEvent
from ml_platform.schedules.models import TrainingSchedule

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def browser_of():
    def login(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return login


def dialog_post(source_run, **fields):
    return {
        "source_training_run_id": source_run.pk,
        "name": "nightly",
        "schedule_type": "daily",
        "schedule_time": "02:30",
        "schedule_timezone": "Europe/Warsaw",
        **fields,
    }


def test_the_dialog_opens_for_a_run_with_its_model_named(time_travel, browser_of, olivia, source_run):
    answer = browser_of(olivia).get(f"/schedules/new/?run={source_run.pk}", **HTMX)
    assert answer.status_code == 200
    assert b'data-component="modal"' in answer.content and b'value="recs retraining"' in answer.content


def test_saving_goes_to_the_new_schedules_page_and_is_audited(time_travel, browser_of, olivia, source_run):
    answer = browser_of(olivia).post("/schedules/new/", dialog_post(source_run), **HTMX)
    schedule = TrainingSchedule.objects.get()
    assert (answer.status_code, answer["HX-Redirect"]) == (204, f"/schedules/{schedule.pk}/")
    assert AuditEvent.objects.filter(action="schedule.create", object_id=schedule.pk).exists()


def test_a_refused_save_answers_the_form_with_the_problem_next_to_its_field(
    time_travel, browser_of, olivia, source_run
):
    answer = browser_of(olivia).post(
        "/schedules/new/", dialog_post(source_run, schedule_timezone="Mars/Olympus"), **HTMX
    )
    assert answer.status_code == 200 and not TrainingSchedule.objects.exists()
    assert b'data-errors-for="schedule_timezone"' in answer.content
    assert b"<dialog" not in answer.content  # only the form: it replaces itself inside the open dialog


def test_a_model_with_a_schedule_offers_no_second_one(daily, browser_of, olivia, source_run):
    answer = browser_of(olivia).get(f"/schedules/new/?model={source_run.registered_model_id}", **HTMX)
    assert f"already has a schedule (ID: {daily.pk})".encode() in answer.content
    assert b'id="schedule-form"' not in answer.content


@pytest.mark.parametrize(
    "query", ["schedule_type=hourly&schedule_minute=abc", "schedule_type=once&scheduled_datetime=x"]
)
def test_junk_in_the_live_panel_says_why_there_are_no_next_runs(browser_of, olivia, query):
    answer = browser_of(olivia).get(f"/schedules/next-runs/?{query}", **HTMX)
    assert answer.status_code == 200 and b"No next runs yet" in answer.content


@pytest.mark.parametrize("path", ["/schedules/new/?run={run}", "/schedules/{schedule}/"])
def test_an_outsider_gets_404(daily, browser_of, oscar, source_run, path):
    assert browser_of(oscar).get(path.format(run=source_run.pk, schedule=daily.pk)).status_code == 404


def test_an_outsider_cannot_pause_a_schedule(daily, browser_of, oscar):
    assert browser_of(oscar).post(f"/schedules/{daily.pk}/pause/").status_code == 404
    daily.refresh_from_db()
    assert daily.status == "active"


def test_the_models_page_shows_the_schedule_in_its_zone(daily, browser_of, olivia, project):
    page = browser_of(olivia).get(f"/projects/{project.id}/models/").content.decode()
    assert "Scheduled" in page and "Fri 2025-03-14 10:00 UTC" in page


def test_the_edit_dialog_is_filled_with_the_schedule_and_saves_a_new_time(time_travel, daily, browser_of, olivia):
    browser = browser_of(olivia)
    opened = browser.get(f"/schedules/{daily.pk}/edit/", **HTMX).content.decode()
    assert 'value="10:00"' in opened and "Edit Training Schedule" in opened
    saved = browser.post(
        f"/schedules/{daily.pk}/edit/",
        {"name": "recs retraining", "schedule_type": "daily", "schedule_time": "12:15", "schedule_timezone": "UTC"},
        **HTMX,
    )
    assert saved.status_code == 204
    daily.refresh_from_db()
    assert f"{daily.next_run_at:%Y-%m-%d %H:%M}" == "2025-03-14 12:15"


def test_the_wizards_train_now_then_schedule_opens_the_dialog_prefilled_from_the_new_run(
    browser_of, olivia, project, small_catalog
):
    dataset, features, model = small_catalog
    form = {
        "name": "recs",
        "dataset_id": dataset.pk,
        "feature_config_id": features.pk,
        "model_config_id": model.pk,
        "training_params.epochs": 1,
        "schedule_config.schedule_type": "then_schedule",
    }
    response = browser_of(olivia).post(f"/projects/{project.pk}/training/wizard/submit/", form, **HTMX)
    events = json.loads(response["HX-Trigger"])
    run = project.training_runs.get()
    assert events["schedule-run"] == {"url": f"/schedules/new/?run={run.pk}"}
    assert run.schedule_config.get("schedule_type") in (None, "none")
    dialog = browser_of(olivia).get(events["schedule-run"]["url"], **HTMX)
    assert dialog.status_code == 200 and f'value="{run.pk}"' in dialog.content.decode()
