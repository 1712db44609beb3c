"""Pushing to the registry: blessed runs become versions (in MLflow's registry too); others are refused."""

import pytest
from django.conf import settings

from ml_platform.core.errors import Conflict
from ml_platform.registry.services import push_to_registry
from ml_platform.training.models import TrainingRun
from ml_platform.training.worker import Worker
from tests.helpers import api_client_for, drive, queue_run

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_blessed_run_becomes_version_one_then_two(project, olivia, catalog):
    worker = Worker()
    first = drive(worker, queue_run(project, olivia, catalog), lambda r: r.is_terminal)
    assert first.status == TrainingRun.COMPLETED, first.error_message
    pushed = api_client_for(olivia).post(f"/api/training-runs/{first.pk}/push/")
    assert pushed.status_code == 200, pushed.content
    first.refresh_from_db()
    assert first.registry_version == 1
    second = drive(worker, queue_run(project, olivia, catalog), lambda r: r.is_terminal)
    assert push_to_registry(second).registry_version == 2
    registered = first.registered_model
    registered.refresh_from_db()
    assert (registered.latest_version, registered.total_versions) == (2, 2)
    assert registered.first_registered_at == first.registered_at

    from mlflow.tracking import MlflowClient

    versions = MlflowClient(tracking_uri=settings.MLFLOW_TRACKING_URI).search_model_versions(
        f"name='{registered.mlflow_model_name}'"
    )
    # The MLflow store outlives a test's database, so earlier tests may have versions of this name too.
    ours = {v.tags["ml_platform.run"]: int(v.version) for v in versions}
    assert ours[str(second.pk)] == ours[str(first.pk)] + 1
    assert int(second.final_metrics["mlflow_model_version"]) == ours[str(second.pk)]
    with pytest.raises(Conflict, match="Already registered as version 1"):
        push_to_registry(first)


def test_an_unblessed_run_is_refused_with_its_reasons(project, olivia, catalog):
    run = queue_run(
        project, olivia, catalog, evaluator_config={"thresholds": [{"metric": "recall_at_100", "value": 0.999}]}
    )
    run = drive(Worker(), run, lambda r: r.is_terminal)
    assert run.status == TrainingRun.NOT_BLESSED
    assert run.stages["Pusher"]["status"] == "skipped"
    with pytest.raises(Conflict) as refused:
        push_to_registry(run)
    assert "Only blessed models can be registered: Recall@100" in refused.value.message
    assert "0.999" in refused.value.message
    through_api = api_client_for(olivia).post(f"/api/training-runs/{run.pk}/push/")
    assert through_api.status_code == 409
    assert through_api.json()["error"].startswith("Only blessed models can be registered")
