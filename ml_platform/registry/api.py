"""The model registry through the API.

* ``GET /projects/{id}/registered-models/``: the Models Registry table (filters, KPIs);
* ``GET /projects/{id}/registered-models/check-name/``: whether a run name is new (the run form);
* ``GET /registered-models/{id}/``: one model and its registered versions;
* ``POST /training-runs/{id}/push/``: a blessed, completed run becomes the model's next version.

A registered model is reached through its project: outsiders get 404. Deploying one is
``ml_platform.deployment.api``'s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db.models import Max, Q
from ninja import Query, Router, Schema
from pydantic import Field

from ml_platform.audit import services as audit
from ml_platform.core.errors import refusals
from ml_platform.core.fields import PAGE_MAX
from ml_platform.core.filters import comma_choices
from ml_platform.deployment import services as deployment_services
from ml_platform.deployment.models import Deployment, DeploymentStatus
from ml_platform.projects.access import object_for_user, project_for_user
from ml_platform.registry import services
from ml_platform.registry.models import RegisteredModel
from ml_platform.training import presenters
from ml_platform.training.access import run_for_user
from ml_platform.training.models import TrainingRun
from ml_platform.training.schemas import ModelTypeName, RunDetail, RunStatusName

router = Router(tags=["registry"])

MODEL_TYPES = tuple(t for t, _ in RegisteredModel.MODEL_TYPES)
DeploymentStatusName = Literal[tuple(DeploymentStatus.values)]  # type: ignore[valid-type]
# A model's state in the table: its deployment's, or (not deployed) whether it has a version yet.
MODEL_STATUSES = ("not_registered", "registered", *(s for s in DeploymentStatus.values if s != DeploymentStatus.NONE))
ModelStatusName = Literal[MODEL_STATUSES]  # type: ignore[valid-type]


# --------------------------------------------------------------------------- schemas


class DeploymentSummary(Schema):
    status: DeploymentStatusName
    version: int | None
    target: str
    endpoint_url: str
    deployed_at: datetime | None


class RegisteredModelItem(Schema):
    id: int
    project_id: int
    name: str
    model_type: ModelTypeName
    description: str
    status: ModelStatusName
    is_registered: bool
    total_versions: int
    latest_version: int | None
    deployed_version: int | None
    has_schedule: bool
    first_registered_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_trained_at: datetime | None = Field(None, description="When the newest version's training run finished")
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
    status: RunStatusName
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


class NameCheck(Schema):
    name: str
    available: bool
    model_type: ModelTypeName | None
    registered_model_id: int | None
    has_schedule: bool = Field(description="The model has a schedule: a run form should not offer another")
    schedule_id: int | None


# --------------------------------------------------------------------------- helpers


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
        **{
            f: getattr(registered, f)
            for f in (
                "id",
                "project_id",
                "name",
                "model_type",
                "description",
                "is_registered",
                "total_versions",
                "latest_version",
                "deployed_version",
                "first_registered_at",
                "created_at",
                "updated_at",
            )
        },
        "last_trained_at": getattr(registered, "last_trained_at", None),
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


def _version(run: TrainingRun, deployment: Deployment | None) -> dict:
    problem = deployment_services.servable_problem(run)
    return {
        "version": run.registry_version,
        "run_id": run.pk,
        "run_number": run.run_number,
        "status": run.status,
        "blessed": run.blessed,
        "final_metrics": run.final_metrics or {},
        "registered_at": run.registered_at,
        "created_at": run.created_at,
        "completed_at": run.completed_at,
        "is_deployed": bool(
            deployment and deployment.status == Deployment.DEPLOYED and deployment.version == run.registry_version
        ),
        "deployable": problem is None,
        "not_deployable_reason": problem,
    }


# --------------------------------------------------------------------------- routes


@router.get("/projects/{project_id}/registered-models/", response={200: RegisteredModelPage, **refusals(404, 422)})
def list_registered_models(
    request,
    project_id: int,
    model_type: str | None = Query(None, description=f"One or several of {', '.join(MODEL_TYPES)}, comma-separated"),
    has_schedule: bool | None = None,
    search: str | None = None,
    page: int = Query(1, ge=1, le=PAGE_MAX),
    page_size: int = Query(50, ge=1, le=200),
):
    """The project's registered models by name."""
    project = project_for_user(request.user, project_id)
    everything = RegisteredModel.objects.filter(project=project)
    models = everything.select_related("deployment").annotate(
        last_trained_at=Max("versions__completed_at", filter=Q(versions__registry_version__isnull=False))
    )
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
    rows = list(models[start : start + page_size]) if start < count else []
    scheduled_ids = _with_schedule(everything)
    kpi = {
        "total": everything.count(),
        "registered": everything.filter(first_registered_at__isnull=False).count(),
        "with_schedule": len(scheduled_ids),
        "deployed": everything.filter(deployed_version__isnull=False).count(),
    }
    return {
        "count": count,
        "page": page,
        "page_size": page_size,
        "kpi": kpi,
        "results": [_item(r, scheduled_ids) for r in rows],
    }


@router.get("/projects/{project_id}/registered-models/check-name/", response={200: NameCheck, **refusals(404, 422)})
def check_model_name(request, project_id: int, name: str = Query(..., min_length=1, max_length=200)):
    """Whether a run name is new. A taken name may still be used by a run of the same model type
    (it becomes that model's next version); ``model_type`` says which type that is."""
    project = project_for_user(request.user, project_id)
    existing = RegisteredModel.objects.filter(project=project, name=name.strip()).only("id", "model_type").first()
    schedule_id = _schedule_id(existing) if existing else None
    return {
        "name": name.strip(),
        "available": existing is None,
        "model_type": existing.model_type if existing else None,
        "registered_model_id": existing.pk if existing else None,
        "has_schedule": schedule_id is not None,
        "schedule_id": schedule_id,
    }


def _schedule_id(registered: RegisteredModel) -> int | None:
    try:
        return registered.schedule.pk  # ml_platform.schedules' one-to-one
    except ObjectDoesNotExist:
        return None


@router.get("/registered-models/{registered_id}/", response={200: RegisteredModelDetail, **refusals(404, 422)})
def get_registered_model(request, registered_id: int):
    """The model, its deployment summary and its registered versions (newest first)."""
    registered = object_for_user(RegisteredModel, request.user, registered_id)
    deployment = _deployment(registered)
    runs = TrainingRun.objects.filter(registered_model=registered, registry_version__isnull=False).order_by(
        "-registry_version"
    )
    scheduled = _with_schedule(RegisteredModel.objects.filter(pk=registered.pk))
    runs = list(runs)
    return {
        **_item(registered, scheduled),
        "last_trained_at": runs[0].completed_at if runs else None,
        "versions": [_version(run, deployment) for run in runs],
    }


@router.post("/training-runs/{run_id}/push/", response={200: RunDetail, **refusals(404, 409, 422)}, by_alias=True)
def push_training_run(request, run_id: int):
    """Register a blessed, completed run as the next version of its model (409 with the reasons otherwise)."""
    run = services.push_to_registry(run_for_user(request.user, run_id))
    audit.record(
        request,
        audit.Action.PUSH,
        run,
        changes={"registered_model": run.registered_model.name, "version": run.registry_version},
    )
    return presenters.detail_of(run.pk)
