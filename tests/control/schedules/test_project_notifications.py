"""Notification targets of a project: they hear from every schedule of the project, besides each schedule's
own; managed through the API and the project's notifications page."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from ml_platform.audit.models import AuditEvent
from ml_platform.schedules import scheduler, services
from ml_platform.schedules.models import NotificationDelivery, NotificationTarget
from ml_platform.schedules.services import ScheduleFields
from ml_platform.training import services as training_services
from ml_platform.training.models import TrainingRun
from tests.helpers import api_client_for, errors_by_field


@pytest.fixture
def second_schedule(time_travel, project, olivia, small_catalog):
    """A daily 10:00 schedule of another model of the project ("recs-b2b")."""
    dataset, features, model = small_catalog
    run = training_services.create_training_run(
        project,
        olivia,
        name="recs-b2b",
        dataset_id=dataset.id,
        feature_config_id=features.id,
        model_config_id=model.id,
        split_config={"strategy": "time_holdout", "holdout_days": 45},
        training_params={"epochs": 1, "early_stopping": {"enabled": False}},
    )
    fields = ScheduleFields(name="b2b retraining", schedule_type="daily", schedule_time=time(10, 0))
    return services.create_from_run(run, olivia, fields)


def fail_todays_runs(time_travel) -> None:
    time_travel.shift(timedelta(days=1))
    scheduler.tick()
    for run in TrainingRun.objects.filter(firings__isnull=False).exclude(status__in=TrainingRun.TERMINAL):
        run.transition(TrainingRun.RUNNING)
        run.transition(TrainingRun.FAILED, error_message="Trainer ran out of memory")
    scheduler.tick()


def test_a_project_target_hears_from_every_schedule_of_the_project(
    time_travel, daily, second_schedule, project, mailoutbox
):
    services.add_notification_target(project, "email", "team@example.com", [])
    fail_todays_runs(time_travel)
    told = sorted(NotificationDelivery.objects.filter(target__address="team@example.com").values_list("schedule"))
    assert told == sorted([(daily.pk,), (second_schedule.pk,)])
    assert sorted(m.to[0] for m in mailoutbox) == ["team@example.com", "team@example.com"]


def test_a_schedule_tells_its_own_targets_and_its_projects(time_travel, daily, project, mailoutbox):
    services.add_notification_target(project, "email", "team@example.com", ["run_failed"])
    services.add_notification_target(daily, "email", "owner@example.com", [])
    fail_todays_runs(time_travel)
    assert sorted(m.to[0] for m in mailoutbox) == ["owner@example.com", "team@example.com"]


def test_another_projects_target_hears_nothing(time_travel, daily, oscars_project, mailoutbox):
    services.add_notification_target(oscars_project, "email", "oscar@example.com", [])
    fail_todays_runs(time_travel)
    assert mailoutbox == [] and not NotificationDelivery.objects.exists()


def test_the_api_adds_lists_and_removes_a_projects_webhook(api, project, dns):
    added = api.post(
        f"/api/projects/{project.pk}/notifications/",
        {"kind": "webhook", "address": "https://hooks.example.com/ml", "events": ["deployed"]},
    )
    assert added.status_code == 201, added.content
    target = NotificationTarget.objects.get(pk=added.json()["id"])
    assert (target.project_id, target.schedule_id, added.json()["secret"]) == (project.pk, None, target.secret)
    listed = api.get(f"/api/projects/{project.pk}/notifications/").json()
    assert [(t["address"], t["events"]) for t in listed] == [("https://hooks.example.com/ml", ["deployed"])]
    assert api.delete(f"/api/projects/{project.pk}/notifications/{target.pk}/").status_code == 204
    assert not NotificationTarget.objects.exists()
    assert AuditEvent.objects.filter(object_id=project.pk, action="update").count() == 2


def test_a_bad_address_is_refused_naming_the_field(api, project):
    answer = api.post(f"/api/projects/{project.pk}/notifications/", {"kind": "email", "address": "not-an-address"})
    assert errors_by_field(answer, 422) == {"address": "not an e-mail address"}


def test_a_projects_target_cannot_be_removed_through_a_schedule(api, daily, project):
    target = services.add_notification_target(project, "email", "team@example.com", [])
    assert api.delete(f"/api/schedules/{daily.pk}/notifications/{target.pk}/").status_code == 404
    assert NotificationTarget.objects.filter(pk=target.pk).exists()


def test_an_outsider_gets_404_for_a_projects_targets(project, oscar):
    outsider = api_client_for(oscar)
    assert outsider.get(f"/api/projects/{project.pk}/notifications/").status_code == 404
    answer = outsider.post(f"/api/projects/{project.pk}/notifications/", {"kind": "email", "address": "o@example.com"})
    assert answer.status_code == 404


def test_the_page_adds_a_target_and_shows_it(pages, project):
    answer = pages.post(
        f"/projects/{project.pk}/notifications/notify/", {"kind": "email", "address": "team@example.com"}
    )
    assert answer.status_code == 302
    page = pages.get(f"/projects/{project.pk}/notifications/").content.decode()
    assert "team@example.com" in page and "every event" in page


def test_the_page_shows_a_refusal_in_the_form_not_a_500(pages, project):
    answer = pages.post(f"/projects/{project.pk}/notifications/notify/", {"kind": "email", "address": "nope"})
    assert answer.status_code == 422
    assert "address: not an e-mail address" in answer.content.decode()


def test_the_page_removes_a_target(pages, project):
    target = services.add_notification_target(project, "email", "team@example.com", [])
    answer = pages.post(f"/projects/{project.pk}/notifications/stop-notifying/", {"target_id": target.pk})
    assert answer.status_code == 302 and not NotificationTarget.objects.exists()


def test_a_schedules_page_names_the_project_targets_it_also_tells(pages, daily, project):
    services.add_notification_target(project, "email", "team@example.com", [])
    page = pages.get(f"/schedules/{daily.pk}/").content.decode()
    assert "Also told, as for every schedule of b2b-recs: team@example.com." in page


@pytest.mark.parametrize("page", ["/projects/{id}/models/", "/projects/{id}/"])
def test_the_models_page_and_the_project_page_link_to_the_projects_notifications(pages, project, page):
    html = pages.get(page.format(id=project.pk)).content.decode()
    assert f'<a href="/projects/{project.pk}/notifications/" id="project-notifications-link">' in html
