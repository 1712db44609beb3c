"""The view modal over one real run (executed by the worker, registered once, shared by the module).

The Overview's Deployment section offers the cloud targets through their adapters: without the cloud
settings the Vertex AI and Cloud Run buttons are disabled with the reason (the settings to set); with them
they are enabled, and a click queues a background deploy to that target (deployment/jobs.py), which the
worker carries out through deployment/cloud.py. The Results tab's early stopping reads the keys the Trainer
really records, and the Overview's date chip is the dataset's real timestamp column."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from ml_platform.deployment.models import Deployment
from ml_platform.registry.services import push_to_registry
from ml_platform.training.models import TrainingRun

pytestmark = pytest.mark.django_db
CLOUD = {"CLOUD_PROJECT_ID": "recs-prod", "CLOUD_DATA_REGION": "europe-west4", "CLOUD_STAGING_BUCKET": "gs://recs"}


@pytest.fixture(scope="module")
def registered(finished, django_db_blocker):
    """The module's finished run, pushed to the registry as version 1."""
    with django_db_blocker.unblock():
        return push_to_registry(finished.run)


@pytest.fixture
def owner(finished):
    client = Client()
    client.force_login(finished.owner)
    return client


def deployment_section(client, run) -> str:
    html = client.get(f"/training/runs/{run.pk}/view/overview/").content.decode()
    start = html.index('id="view-deployment"')
    return html[start : html.index("</section>", start)]


def test_without_cloud_settings_the_cloud_buttons_are_disabled_with_the_reason(owner, registered, settings):
    for name in CLOUD:
        setattr(settings, name, "")
    section = deployment_section(owner, registered)
    for target in ("vertex_ai", "cloud_run"):
        (button,) = re.findall(rf'<button[^>]*data-target="{target}"[^>]*>', section)
        assert " disabled " in button and "hx-post" not in button
        reason = section[section.index(f'data-reason="{target}"') :]
        assert "not configured in this installation: set CLOUD_PROJECT_ID" in reason[: reason.index("</p>")]
    assert 'data-action="deploy" data-target="local"' in section


@pytest.mark.parametrize(("target", "label"), [("vertex_ai", "Vertex AI"), ("cloud_run", "Cloud Run")])
def test_with_cloud_settings_a_cloud_button_queues_a_deploy_to_its_target(owner, registered, settings, target, label):
    for name, value in CLOUD.items():
        setattr(settings, name, value)
    section = deployment_section(owner, registered)
    assert "data-reason" not in section
    assert f"""hx-vals='{{"target": "{target}"}}'""" in section

    answer = owner.post(f"/training/runs/{registered.pk}/deploy/", {"target": target})
    assert answer.status_code == 200
    toast = json.loads(answer["HX-Trigger"])["toast"]
    assert toast == {"level": "success", "message": f"{registered} is being deployed to {label}: it serves once loaded"}
    queued = Deployment.objects.get(registered_model=registered.registered_model)
    assert (queued.pending_action, queued.pending_target, queued.pending_version) == ("deploy", target, 1)


def test_an_unknown_target_is_refused_naming_the_field(owner, registered):
    answer = owner.post(f"/training/runs/{registered.pk}/deploy/", {"target": "mainframe"})
    assert answer.status_code == 422
    assert "unknown deployment target 'mainframe'" in json.loads(answer["HX-Trigger"])["toast"]["message"]


def test_early_stopping_reads_what_the_trainer_really_records(owner, registered):
    metrics = registered.final_metrics
    assert {"early_stopped_epoch", "best_epoch", "epochs_run"} <= set(metrics)  # training/view.py early_stopping
    TrainingRun.objects.filter(pk=registered.pk).update(
        training_params={**registered.training_params, "early_stopping": {"enabled": True, "patience": 2}}
    )
    html = owner.get(f"/training/runs/{registered.pk}/view/results/").content.decode()
    assert f'data-role="epochs-run">{metrics["epochs_run"]} epochs run<' in html
    assert f'data-role="best-epoch">Best epoch {metrics["best_epoch"]}<' in html


def test_the_date_chip_is_the_datasets_timestamp_column(owner, registered):
    column = registered.dataset_snapshot["mapping"]["timestamp"]
    html = owner.get(f"/training/runs/{registered.pk}/view/overview/").content.decode()
    assert f'data-role="date-column">Date column {column}<' in html
