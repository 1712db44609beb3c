"""The model registry: blessed runs become numbered versions of a registered model (also in MLflow's registry)."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from ml_platform.core import clock
from ml_platform.core.errors import Conflict, NotFound
from ml_platform.registry.models import RegisteredModel
from ml_platform.training import rules
from ml_platform.training.models import TrainingRun


def mlflow_model_name(registered: RegisteredModel) -> str:
    """MLflow's registry is one namespace for every project; a model keeps the name it was first registered as."""
    return registered.mlflow_model_name or f"{registered.project.unique_name}.{registered.name}"


def _register_in_mlflow(run: TrainingRun, registered: RegisteredModel) -> str:
    """Log the serving model to the run's MLflow run and create a registry version from it."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.MLFLOW_TRACKING_URI)
    client.log_artifacts(run.mlflow_run_id, run.serving_model_path, artifact_path="serving_model")
    name = mlflow_model_name(registered)
    try:
        client.create_registered_model(name, description=registered.description or None)
    except MlflowException as error:
        if "already exists" not in str(error).lower() and "RESOURCE_ALREADY_EXISTS" not in str(error):
            raise
    source = f"{client.get_run(run.mlflow_run_id).info.artifact_uri}/serving_model"
    version = client.create_model_version(
        name, source=source, run_id=run.mlflow_run_id, tags={"ml_platform.run": str(run.pk)}
    )
    return version.version


def push_to_registry(run: TrainingRun) -> TrainingRun:
    """Register a blessed, completed run as the next version of its model."""
    if refused := rules.push_refused(rules.RunState.of(run)):
        raise Conflict(refused)
    registered = run.registered_model
    mlflow_version = _register_in_mlflow(run, registered) if run.mlflow_run_id else None
    with transaction.atomic():
        registered = RegisteredModel.objects.select_for_update().get(pk=registered.pk)
        latest = registered.versions.aggregate(latest=Max("registry_version"))["latest"] or 0
        now = clock.now()
        TrainingRun.objects.filter(pk=run.pk).update(registry_version=latest + 1, registered_at=now)
        registered.latest_version = latest + 1
        registered.total_versions = registered.versions.filter(registry_version__isnull=False).count()
        registered.first_registered_at = registered.first_registered_at or now
        registered.mlflow_model_name = mlflow_model_name(registered)
        registered.save()
    run.refresh_from_db()
    if mlflow_version is not None:
        run.final_metrics = {**run.final_metrics, "mlflow_model_version": mlflow_version}
        run.save(update_fields=["final_metrics"])
    return run


def version_run(registered: RegisteredModel, version: int) -> TrainingRun:
    run = registered.versions.filter(registry_version=version).first()
    if run is None:
        raise NotFound(f"{registered.name} has no version {version}")
    return run
