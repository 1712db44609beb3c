"""Deploying registered models through the API.

* ``POST /registered-models/{id}/deploy/`` ``{"version": 2, "target": "local"}``,
  ``POST /registered-models/{id}/undeploy/``, ``POST /registered-models/{id}/rollback/``
  and ``GET /registered-models/{id}/deployment/``: the deployment state and history;
* ``POST /training-runs/{id}/deploy/``: the view modal's button (deploys that run's version).

The registered models themselves (list, detail, versions, push) are ``ml_platform.registry.api``'s.
A registered model is reached through its project: outsiders get 404.
"""

from __future__ import annotations

from datetime import datetime

from django.http import Http404
from ninja import Router, Schema
from pydantic import Field

from ml_platform.audit import services as audit
from ml_platform.core.errors import Conflict, refusals
from ml_platform.deployment import services
from ml_platform.projects.access import object_for_user
from ml_platform.registry.models import RegisteredModel
from ml_platform.training.models import TrainingRun

router = Router(tags=["deployment"])
# 404: no such model or version; 409: already deployed, nothing to roll back, the files are gone; 422: not an
# id; 502: the endpoint failed (the previous version, if any, keeps serving).
REFUSED = refusals(404, 409, 422, 502)


# --------------------------------------------------------------------------- schemas


class DeployIn(Schema):
    version: int = Field(ge=1, description="The registry version to deploy")
    target: str = Field(
        "local",
        description="Where to deploy: 'local' (the platform's serving endpoint); "
        "'vertex_ai' and 'cloud_run' are not available yet",
    )


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


# --------------------------------------------------------------------------- helpers


def registered_for_user(user, registered_id: int) -> RegisteredModel:
    return object_for_user(RegisteredModel, user, registered_id)


def _recorded(request, action: str, registered: RegisteredModel, version: int | None, target: str, **more) -> dict:
    """Record a change of what serves in the audit trail, and answer the model's deployment state."""
    audit.record(request, action, registered, changes={"version": version, "target": target, **more})
    return services.deployment_state(registered)


# --------------------------------------------------------------------------- deployment


@router.get("/registered-models/{registered_id}/deployment/", response={200: DeploymentOut, **refusals(404, 422)})
def get_deployment(request, registered_id: int):
    """What is deployed (and what the endpoint says about it now), what a rollback would do, and the history."""
    return services.deployment_state(registered_for_user(request.user, registered_id))


@router.post("/registered-models/{registered_id}/deploy/", response={200: DeploymentOut, **REFUSED, **refusals(400)})
def deploy(request, registered_id: int, payload: DeployIn):
    """Serve a registered version, replacing the deployed one; answers once it serves.

    404: no such version; 409: already deployed, or the version's files are
    gone; 422: unknown or unavailable target; 502: the endpoint could not
    load it (the previous version, if any, keeps serving).
    """
    registered = registered_for_user(request.user, registered_id)
    deployment = services.deploy(registered, payload.version, request.user, payload.target)
    return _recorded(request, audit.Action.DEPLOY, registered, deployment.version, deployment.target)


@router.post("/registered-models/{registered_id}/undeploy/", response={200: DeploymentOut, **REFUSED})
def undeploy(request, registered_id: int):
    """Stop serving the model (409 when it is not deployed)."""
    registered = registered_for_user(request.user, registered_id)
    before = services.current(registered)
    deployment = services.undeploy(registered, request.user)  # 409 unless something was deployed
    return _recorded(request, audit.Action.UNDEPLOY, registered, before.version, deployment.target)


@router.post("/registered-models/{registered_id}/rollback/", response={200: DeploymentOut, **REFUSED})
def rollback(request, registered_id: int):
    """Deploy the version that was deployed before the current one (409 when there is none)."""
    registered = registered_for_user(request.user, registered_id)
    deployment = services.rollback(registered, request.user)
    return _recorded(request, audit.Action.ROLLBACK, registered, deployment.version, deployment.target)


@router.post("/training-runs/{run_id}/deploy/", response={200: DeploymentOut, **REFUSED, **refusals(400)})
def deploy_training_run(request, run_id: int, payload: DeployRunIn | None = None):
    """Deploy the version a registered run became (the view modal's Deploy button)."""
    run = (
        TrainingRun.objects.select_related("registered_model__project")
        .filter(pk=run_id, project__memberships__user=request.user)
        .first()
    )
    if run is None:
        raise Http404("No such training run")
    if run.registry_version is None or run.registered_model is None:
        raise Conflict(f"Run #{run.run_number} is not registered; push it to the registry before deploying")
    target = payload.target if payload else "local"
    deployment = services.deploy(run.registered_model, run.registry_version, request.user, target)
    return _recorded(
        request,
        audit.Action.DEPLOY,
        run.registered_model,
        deployment.version,
        deployment.target,
        training_run_id=run.pk,
    )
