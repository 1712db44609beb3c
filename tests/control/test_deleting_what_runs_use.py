"""Deleting a dataset or a config a training run or an experiment was made from is refused, with the reason,
by the API (409) and by the pages' delete dialogs, and nothing is deleted or audited."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from ml_platform.audit.models import AuditEvent
from ml_platform.datasets.models import Dataset
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.training.models import TrainingRun
from tests import helpers

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(project, olivia, small_catalog) -> TrainingRun:
    """A queued training run 'recs' #1 of the small catalog (never trained)."""
    return helpers.queue_run(project, olivia, small_catalog)


@pytest.fixture
def run_only_dataset(project, olivia, run, purchases_csv, purchases_mapping) -> Dataset:
    """A dataset that no config reads, that the run was made from."""
    other = helpers.file_dataset(project, olivia, purchases_csv, purchases_mapping, name="older purchases")
    TrainingRun.objects.filter(pk=run.pk).update(dataset=other)
    return other


def page_client(user) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.get(pk=user.pk))
    return client


def test_the_api_refuses_to_delete_a_dataset_a_training_run_was_made_from(api, run_only_dataset):
    response = api.delete(f"/api/datasets/{run_only_dataset.id}/")
    assert response.status_code == 409
    assert response.json()["error"] == "Still in use by training run 'recs' #1"
    assert Dataset.objects.filter(pk=run_only_dataset.pk).exists()
    assert not AuditEvent.objects.filter(action="delete").exists()


def test_the_dataset_page_refuses_to_delete_a_dataset_a_run_was_made_from_and_says_why(olivia, run_only_dataset):
    answer = page_client(olivia).post(f"/datasets/{run_only_dataset.id}/delete/", follow=True)
    assert "Still in use by training run &#x27;recs&#x27; #1" in answer.content.decode()
    assert Dataset.objects.filter(pk=run_only_dataset.pk).exists()
    assert not AuditEvent.objects.filter(action="delete").exists()


def test_an_experiment_is_named_as_one(api, run, run_only_dataset):
    (experiment,) = helpers.copies(run.id, 1, kind=TrainingRun.EXPERIMENT, name="", dataset=run_only_dataset)
    TrainingRun.objects.filter(pk=run.pk).update(dataset=None)
    response = api.delete(f"/api/datasets/{run_only_dataset.id}/")
    assert response.status_code == 409
    assert response.json()["error"] == f"Still in use by experiment #{experiment.run_number}"


def test_the_reason_names_the_configs_and_runs_and_counts_the_rest(api, run, small_catalog):
    dataset, _, _ = small_catalog
    helpers.copies(run.id, 3)
    response = api.delete(f"/api/datasets/{dataset.id}/")
    assert response.status_code == 409
    assert response.json()["error"] == (
        "Still in use by feature config 'features', training run 'recs' #1, training run 'recs' #2 and 2 more"
    )


@pytest.mark.parametrize("which", ["feature-configs", "model-configs"])
def test_the_api_refuses_to_delete_a_config_a_run_was_made_from(api, run, small_catalog, which):
    _, features, model = small_catalog
    config = features if which == "feature-configs" else model
    response = api.delete(f"/api/{which}/{config.id}/")
    assert response.status_code == 409
    assert response.json()["error"] == "Still in use by training run 'recs' #1"
    assert type(config).objects.filter(pk=config.pk).exists()


@pytest.mark.parametrize("which", ["feature-configs", "model-configs"])
def test_the_config_pages_refuse_to_delete_a_config_a_run_was_made_from_and_say_why(olivia, run, small_catalog, which):
    _, features, model = small_catalog
    config = features if which == "feature-configs" else model
    answer = page_client(olivia).post(f"/{which}/{config.id}/delete/", follow=True)
    assert "Still in use by training run &#x27;recs&#x27; #1" in answer.content.decode()
    assert FeatureConfig.objects.filter(pk=features.pk).exists() and ModelConfig.objects.filter(pk=model.pk).exists()
    assert not AuditEvent.objects.filter(action="delete").exists()


def test_once_its_runs_are_gone_a_dataset_is_deleted(api, run_only_dataset):
    TrainingRun.objects.filter(dataset=run_only_dataset).delete()
    assert api.delete(f"/api/datasets/{run_only_dataset.id}/").status_code == 204
    assert not Dataset.objects.filter(pk=run_only_dataset.pk).exists()
