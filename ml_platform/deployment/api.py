"""Registered models and their deployment through the API.

* ``GET /projects/{id}/registered-models/``: the Models Registry table (filters, KPIs);
* ``GET /registered-models/{id}/``: one model and its registered versions;
* ``POST /registered-models/{id}/deploy/`` ``{"version": 2, "target": "local"}``,
  ``POST /registered-models/{id}/undeploy/``, ``POST /registered-models/{id}/rollback/``
  and ``GET /registered-models/{id}/deployment/``: the deployment state and history;
* ``POST /training-runs/{id}/deploy/``: the view modal's button (deploys that run's version).

A registered model is reached through its project: outsiders get 404.
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import FieldDoesNotExist
from django.db.models import Q
from django.http import Http404
from ninja import Query, Router, Schema
from pydantic import Field

from ml_platform.audit import services as audit
from ml_platform.core.fields import PAGE_MAX
from ml_platform.core.filters import comma_choices
from ml_platform.core.errors import ApiError
from ml_platform.deployment import services
from ml_platform.deployment.models import Deployment
from ml_platform.projects.access import object_for_user, project_for_user
from ml_platform.registry.models import RegisteredModel
from ml_platform.training.models import TrainingRun

router = Router(tags=["deployment"])

MODEL_TYPES = tuple(t for t, _ in RegisteredModel.MODEL_TYPES)


# --------------------------------------------------------------------------- schemas


class DeployIn(Schema):
    version: int = Field(ge=1, description="The registry version to deploy")
    target: str = Field("local", description="Where to deploy: 'local' (the platform's serving endpoint); "
                                             "'vertex_ai' and 'cloud_run' are not available yet")


class DeployRunIn(Schema):
    target: str = "local"


class LiveOut(Schema):
    state: str = Field(description="available, loading, absent, failed or unreachable: what the endpoint says now")
    version: int | None
    endpoint_url: str
    message: str


class DeploymentEventOut(Schema):
    id: int
    action: str
    version: int | None
    previous_version: int | None
    target: str
    succeeded: bool
    message: str
    user: str | None
    at: datetime


class DeploymentOut(Schema):
    registered_model_id: int
    registered_model_name: str
    serving_name: str = Field(description="The model's name at the endpoint (p<project id>-<project>.<model>)")
    status: str = Field(description="none, deploying, deployed or failed")
    version: int | None
    training_run_id: int | None
    target: str
    endpoint_url: str = Field(description="TF Serving's model URL: GET for its status")
    predict_url: str = Field(description="POST {'instances': [...]} or {'inputs': {...}} here")
    recommend_url: str = Field(description="GET with &buyer_id=...&k=... (local endpoint only)")
    deployed_at: datetime | None
    deployed_by: str | None
    message: str
    rollback_version: int | None = Field(description="The version a rollback would deploy; null when none")
    live: LiveOut | None
    history: list[DeploymentEventOut]


class DeploymentSummary(Schema):
    status: str
    version: int | None
    target: str
    endpoint_url: str
    deployed_at: datetime | None


class RegisteredModelItem(Schema):
    id: int
    project_id: int
    name: str
    model_type: str
    description: str
    status: str = Field(description="not_registered, registered, deploying, deployed or failed")
    is_registered: bool
    total_versions: int
    latest_version: int | None
    deployed_version: int | None
    has_schedule: bool
    first_registered_at: datetime | None
    created_at: datetime
    updated_at: datetime
    deployment: DeploymentSummary


class Kpi(Schema):
    total: int
    registered: int
    with_schedule: int
    deployed: int


class RegisteredModelPage(Schema):
    count: int
    page: int
    page_size: int
    results: list[RegisteredModelItem]
    kpi: Kpi = Field(description="Over all the project's registered models, whatever the filters")


class VersionOut(Schema):
    version: int
    run_id: int
    run_number: int
    status: str
    blessed: bool | None
    final_metrics: dict
    registered_at: datetime | None
    created_at: datetime
    completed_at: datetime | None
    is_deployed: bool
    deployable: bool
    not_deployable_reason: str | None


class RegisteredModelDetail(RegisteredModelItem):
    versions: list[VersionOut]


# --------------------------------------------------------------------------- helpers


def registered_for_user(user, registered_id: int) -> RegisteredModel:
    return object_for_user(RegisteredModel, user, registered_id)


def _schedule_filter() -> Q | None:
    """``Q(has a schedule)`` once a schedule relation named ``schedule`` exists; until then no model has one."""
    try:
        RegisteredModel._meta.get_field("schedule")
    except FieldDoesNotExist:
        return None
    return Q(schedule__isnull=False)


def _with_schedule(queryset) -> set[int]:
    has = _schedule_filter()
    return set(queryset.filter(has).values_list("pk", flat=True)) if has is not None else set()


def _status(registered: RegisteredModel, deployment: Deployment | None) -> str:
    if deployment is not None and deployment.status != Deployment.NONE:
        return deployment.status
    return "registered" if registered.is_registered else "not_registered"


def _deployment(registered: RegisteredModel) -> Deployment | None:
    try:
        return registered.deployment
    except Deployment.DoesNotExist:
        return None


def _item(registered: RegisteredModel, scheduled: set[int]) -> dict:
    deployment = _deployment(registered)
    return {
        **{f: getattr(registered, f) for f in (
            "id", "project_id", "name", "model_type", "description", "is_registered", "total_versions",
            "latest_version", "deployed_version", "first_registered_at", "created_at", "updated_at")},
        "status": _status(registered, deployment),
        "has_schedule": registered.pk in scheduled,
        "deployment": {
            "status": deployment.status if deployment else Deployment.NONE,
            "version": deployment.version if deployment else None,
            "target": deployment.target if deployment else "local",
            "endpoint_url": deployment.endpoint_url if deployment else "",
            "deployed_at": deployment.deployed_at if deployment else None,
        },
    }




# --------------------------------------------------------------------------- registered models


@router.get("/projects/{project_id}/registered-models/", response=RegisteredModelPage)
def list_registered_models(request, project_id: int, model_type: str | None = None,
                           has_schedule: bool | None = None, search: str | None = None,
                           page: int = Query(1, ge=1, le=PAGE_MAX), page_size: int = Query(50, ge=1, le=200)):
    """The project's registered models by name. ``model_type`` takes one value or several, comma-separated."""
    project = project_for_user(request.user, project_id)
    everything = RegisteredModel.objects.filter(project=project)
    models = everything.select_related("deployment")
    if model_types := comma_choices("model_type", model_type, MODEL_TYPES):
        models = models.filter(model_type__in=model_types)
    if has_schedule is not None:
        scheduled = _schedule_filter()
        if scheduled is not None:
            models = models.filter(scheduled if has_schedule else ~scheduled)
        elif has_schedule:
            models = models.none()
    if search and search.strip():
        models = models.filter(Q(name__icontains=search.strip()) | Q(description__icontains=search.strip()))
    count = models.count()
    start = (page - 1) * page_size
    rows = list(models[start:start + page_size]) if start < count else []
    scheduled_ids = _with_schedule(everything)
    kpi = {
        "total": everything.count(),
        "registered": everything.filter(first_registered_at__isnull=False).count(),
        "with_schedule": len(scheduled_ids),
        "deployed": everything.filter(deployed_version__isnull=False).count(),
    }
    return {"count": count, "page": page, "page_size": page_size, "kpi": kpi,
            "results": [_item(r, scheduled_ids) for r in rows]}


@router.get("/registered-models/{registered_id}/", response=RegisteredModelDetail)
def get_registered_model(request, registered_id: int):
    """The model, its deployment summary and its registered versions (newest first)."""
    registered = registered_for_user(request.user, registered_id)
    deployment = _deployment(registered)
    runs = (TrainingRun.objects.filter(registered_model=registered, registry_version__isnull=False)
            .order_by("-registry_version"))
    versions = []
    for run in runs:
        problem = services.servable_problem(run)
        versions.append({
            "version": run.registry_version, "run_id": run.pk, "run_number": run.run_number, "status": run.status,
            "blessed": run.blessed, "final_metrics": run.final_metrics or {}, "registered_at": run.registered_at,
            "created_at": run.created_at, "completed_at": run.completed_at,
            "is_deployed": bool(deployment and deployment.status == Deployment.DEPLOYED
                                and deployment.version == run.registry_version),
            "deployable": problem is None, "not_deployable_reason": problem,
        })
    scheduled = _with_schedule(RegisteredModel.objects.filter(pk=registered.pk))
    return {**_item(registered, scheduled), "versions": versions}


# --------------------------------------------------------------------------- deployment


@router.get("/registered-models/{registered_id}/deployment/", response=DeploymentOut)
def get_deployment(request, registered_id: int):
    """What is deployed (and what the endpoint says about it now), what a rollback would do, and the history."""
    return services.deployment_state(registered_for_user(request.user, registered_id))


@router.post("/registered-models/{registered_id}/deploy/", response=DeploymentOut)
def deploy(request, registered_id: int, payload: DeployIn):
    """Serve a registered version, replacing the deployed one; answers once it serves.

    404: no such version; 409: already deployed, or the version's files are
    gone; 422: unknown or unavailable target; 502: the endpoint could not
    load it (the previous version, if any, keeps serving).
    """
    registered = registered_for_user(request.user, registered_id)
    deployment = services.deploy(registered, payload.version, request.user, payload.target)
    audit.record(request, audit.Action.DEPLOY, registered, changes={"version": deployment.version,
                                                                    "target": deployment.target})
    return services.deployment_state(registered)


@router.post("/registered-models/{registered_id}/undeploy/", response=DeploymentOut)
def undeploy(request, registered_id: int):
    """Stop serving the model (409 when it is not deployed)."""
    registered = registered_for_user(request.user, registered_id)
    before = services.current(registered)
    deployment = services.undeploy(registered, request.user)  # 409 unless something was deployed
    audit.record(request, audit.Action.UNDEPLOY, registered, changes={"version": before.version,
                                                                      "target": deployment.target})
    return services.deployment_state(registered)


@router.post("/registered-models/{registered_id}/rollback/", response=DeploymentOut)
def rollback(request, registered_id: int):
    """Deploy the version that was deployed before the current one (409 when there is none)."""
    registered = registered_for_user(request.user, registered_id)
    deployment = services.rollback(registered, request.user)
    audit.record(request, audit.Action.ROLLBACK, registered, changes={"version": deployment.version,
                                                                      "target": deployment.target})
    return services.deployment_state(registered)


@router.post("/training-runs/{run_id}/deploy/", response=DeploymentOut)
def deploy_training_run(request, run_id: int, payload: DeployRunIn | None = None):
    """Deploy the version a registered run became (the view modal's Deploy button)."""
    run = (TrainingRun.objects.select_related("registered_model__project")
           .filter(pk=run_id, project__memberships__user=request.user).first())
    if run is None:
        raise Http404("No such training run")
    if run.registry_version is None or run.registered_model is None:
        raise ApiError(409, f"Run #{run.run_number} is not registered; push it to the registry before deploying")
    target = payload.target if payload else "local"
    deployment = services.deploy(run.registered_model, run.registry_version, request.user, target)
    audit.record(request, audit.Action.DEPLOY, run.registered_model, changes={"version": deployment.version,
                                                                              "target": deployment.target,
                                                                              "training_run_id": run.pk})
    return services.deployment_state(run.registered_model)
