"""The Training, Experiments, Models and Compare pages' endpoints without a pages: outsiders get 404 for
every one, and a page's action is the API's (the same refusal, the same audit record)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from ml_platform.audit.models import AuditEvent
from ml_platform.training.models import TrainingRun
from tests.helpers import copies


@pytest.fixture
def outsider(oscar):
    client = Client()
    client.force_login(oscar)
    return client


def test_outsiders_get_404_for_every_page_and_action(outsider, project, pending_run):
    run_id = pending_run["id"]
    (done,) = copies(run_id, 1, status=TrainingRun.COMPLETED)
    registered = done.registered_model_id
    for path in (
        f"/projects/{project.id}/training/",
        f"/projects/{project.id}/experiments/",
        f"/projects/{project.id}/experiments/best/",
        f"/projects/{project.id}/models/",
        f"/projects/{project.id}/training/wizard/",
        f"/projects/{project.id}/training/wizard/estimate/",
        f"/projects/{project.id}/training/wizard/name/?name=recs",
        f"/training/runs/{run_id}/",
        f"/training/runs/{run_id}/card/",
        f"/training/runs/{run_id}/rerun-form/",
        f"/training/compare/?ids={run_id},{done.pk}",
        f"/models/{registered}/versions/",
        f"/models/{registered}/try/?buyer_id=c1",
    ):
        assert outsider.get(path).status_code == 404, path
    for path in (
        f"/training/runs/{run_id}/cancel/",
        f"/training/runs/{done.pk}/delete/",
        f"/models/{registered}/undeploy/",
        f"/projects/{project.id}/training/wizard/submit/",
    ):
        assert outsider.post(path).status_code == 404, path
    assert TrainingRun.objects.get(pk=run_id).status == TrainingRun.PENDING
    assert TrainingRun.objects.filter(pk=done.pk).exists()


def test_a_page_action_is_recorded_in_the_audit_trail_as_the_api_records_it(pages, project, pending_run):
    response = pages.post(f"/training/runs/{pending_run['id']}/cancel/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert json.loads(response["HX-Trigger"])["toast"] == {"level": "success", "message": "recs #1 cancelled"}
    event = AuditEvent.objects.get(object_type="training.trainingrun", object_id=pending_run["id"], action="cancel")
    assert event.changes == {"status": "cancelled"}


def test_a_refused_page_action_answers_the_apis_status_and_message(pages, pending_run):
    response = pages.post(f"/training/runs/{pending_run['id']}/delete/", HTTP_HX_REQUEST="true")
    assert response.status_code == 409
    assert json.loads(response["HX-Trigger"])["toast"] == {
        "level": "error",
        "message": "Only finished runs can be deleted; this one is pending",
    }
    assert pages.post(f"/training/runs/{pending_run['id']}/explode/").status_code == 404


def test_the_list_polls_only_while_a_card_on_it_is_still_going(pages, project, pending_run):
    polled = pages.get(f"/projects/{project.id}/training/", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-component="poll"' in polled and 'data-polling="true"' in polled
    TrainingRun.objects.filter(pk=pending_run["id"]).update(status=TrainingRun.COMPLETED)
    finished = pages.get(f"/projects/{project.id}/training/", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-component="poll"' not in finished and 'data-polling="false"' in finished
    assert "<html" not in finished  # the list alone, for htmx


def test_an_unknown_filter_value_is_said_on_the_page_not_a_500(pages, project, pending_run):
    response = pages.get(f"/projects/{project.id}/training/?status=bogus")
    assert response.status_code == 200
    assert "status: unknown status &#x27;bogus&#x27;" in response.content.decode()
    assert "page and dataset_id are numbers" in pages.get(f"/projects/{project.id}/training/?page=x").content.decode()


def test_try_it_asks_the_deployed_model_and_says_when_there_is_none(api, pages, pending_run):
    registered = TrainingRun.objects.get(pk=pending_run["id"]).registered_model_id
    response = api.get(f"/api/registered-models/{registered}/recommend/?buyer_id=c1&k=5")
    assert response.status_code == 409
    assert response.json() == {"error": "recs is not deployed: deploy a version to ask it"}
    page = pages.get(f"/models/{registered}/try/?buyer_id=c1").content.decode()
    assert "recs is not deployed: deploy a version to ask it" in page
