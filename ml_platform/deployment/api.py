"""Deploying registered models through the API.

* ``POST /registered-models/{id}/deploy/`` ``{"version": 2, "target": "local"}``,
  ``POST /registered-models/{id}/undeploy/``, ``POST /registered-models/{id}/rollback/``
  and ``GET /registered-models/{id}/deployment/``: the deployment state and history;
* ``POST /training-runs/{id}/deploy/``: the view modal's button (deploys that run's version).

Deploy, rollback and undeploy answer at once: the deployment's ``state`` is
``loading`` (``stopping`` for an undeploy) and ``pending`` names the request,
which the worker carries out (``ml_platform.deployment.jobs``); ``GET
.../deployment/`` then shows ``serving``, ``failed`` (``message`` says why;
the version that served before goes on serving) or ``none``.

The registered models themselves (list, detail, versions, push) are ``ml_platform.registry.api``'s.
A registered model is reached through its project: outsiders get 404.
"""

from __future__ import annotations

from datetime import datetime

from django.http import Http404
from ninja import Query, Router, Schema
from pydantic import Field

from ml_platform.audit import services as audit
from ml_platform.core.errors import Conflict, refusals
from ml_platform.deployment import jobs, services
from ml_platform.projects.access import object_for_user
from ml_platform.registry.models import RegisteredModel
from ml_platform.training import rules
from ml_platform.training.models import TrainingRun

router = Router(tags=["deployment"])
# 404: no such model or version; 409: already deployed, nothing to roll back, the files are gone, a request in
# progress; 422: not an id; 502: the endpoint failed (recommend).
REFUSED = refusals(404, 409, 422, 502)


# --------------------------------------------------------------------------- schemas


class DeployIn(Schema):
    version: int = Field(ge=1, description="The registry version to deploy")
    target: str = Field(
        "local",
        max_length=20,
        description="Where to deploy: 'local' (the platform's serving endpoint); 'vertex_ai' (a Vertex AI "
        "endpoint) and 'cloud_run' (TF Serving on Cloud Run) once the cloud settings are configured",
    )


class DeployRunIn(Schema):
    target: str = Field("local", max_length=20)


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


class PendingOut(Schema):
    action: str = Field(description="deploy, rollback or undeploy")
    version: int | None
    target: str
    requested_at: datetime | None
    requested_by: str | None
    claimed: bool = Field(description="Whether a worker is carrying it out now")


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
    state: str = Field(
        description="none, loading (a deploy or rollback is being carried out), stopping (an undeploy is), "
        "serving, or failed (the last request failed: message says why; a version that served goes on serving)"
    )
    pending: PendingOut | None = Field(description="The request being carried out; null when none")
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
    """Serve a registered version, replacing the deployed one; answers at once, ``state`` ``loading``.

    The worker loads it; the deployment then becomes ``serving``, or ``failed``
    with the reason (the previous version, if any, keeps serving). 404: no such
    version; 409: already deployed, the version's files are gone, or another
    request of this model is in progress; 422: unknown or unavailable target.
    """
    registered = registered_for_user(request.user, registered_id)
    jobs.request_deploy(registered, payload.version, request.user, payload.target)
    return _recorded(request, audit.Action.DEPLOY, registered, payload.version, payload.target)


@router.post("/registered-models/{registered_id}/undeploy/", response={200: DeploymentOut, **REFUSED})
def undeploy(request, registered_id: int):
    """Stop serving the model (409 when it is not deployed); answers at once, ``state`` ``stopping``."""
    registered = registered_for_user(request.user, registered_id)
    deployment = jobs.request_undeploy(registered, request.user)  # 409 unless something was deployed
    return _recorded(request, audit.Action.UNDEPLOY, registered, deployment.version, deployment.target)


@router.post("/registered-models/{registered_id}/rollback/", response={200: DeploymentOut, **REFUSED})
def rollback(request, registered_id: int):
    """Deploy the version that was deployed before the current one (409 when there is none); answers at once,
    ``state`` ``loading``, ``pending.version`` the version it goes back to."""
    registered = registered_for_user(request.user, registered_id)
    deployment = jobs.request_rollback(registered, request.user)
    return _recorded(request, audit.Action.ROLLBACK, registered, deployment.pending_version, deployment.target)


class RecommendationOut(Schema):
    product_id: str | int
    score: float


class RecommendOut(Schema):
    buyer_id: str
    model: str
    version: int
    k: int
    recommendations: list[RecommendationOut]


@router.get("/registered-models/{registered_id}/recommend/", response={200: RecommendOut, **REFUSED})
def recommend(
    request,
    registered_id: int,
    buyer_id: str = Query(..., min_length=1, max_length=200),
    k: int = Query(10, ge=1, le=1000),
):
    """The deployed version's top ``k`` products for a known buyer, asked of the serving endpoint by the
    platform (the page's Try it box): 404 for a buyer the model never saw, 409 when nothing is deployed."""
    return services.recommend(registered_for_user(request.user, registered_id), buyer_id, k)


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
        raise Conflict(rules.deploy_refused(rules.RunState.of(run)))
    target = payload.target if payload else "local"
    jobs.request_deploy(run.registered_model, run.registry_version, request.user, target)
    return _recorded(
        request, audit.Action.DEPLOY, run.registered_model, run.registry_version, target, training_run_id=run.pk
    )
