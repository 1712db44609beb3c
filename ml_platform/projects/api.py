from datetime import datetime

from django.db import transaction
from ninja import Router, Schema, Status
from pydantic import Field

from ml_platform.audit import services as audit
from ml_platform.core.errors import refusals
from ml_platform.core.fields import BlankIfNull, omittable
from ml_platform.projects import services
from ml_platform.projects.access import owned_project_for_user, project_for_user
from ml_platform.projects.models import Membership, Project

router = Router(tags=["projects"])


class ProjectIn(Schema):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = ""


class ProjectPatch(Schema):
    """``description`` null clears it; a project's name cannot be changed."""

    description: BlankIfNull = omittable()


class ProjectOut(Schema):
    id: int
    name: str
    description: str
    created_at: datetime
    role: str
    datasets: int
    feature_configs: int
    model_configs: int


class MemberIn(Schema):
    username: str
    role: str = Field(default=Membership.MEMBER, pattern="^(owner|member)$")


class MemberOut(Schema):
    username: str
    role: str


def _project_out(project: Project, user) -> dict:
    membership = project.memberships.filter(user=user).first()
    return {
        "id": project.id,
        "name": project.name,
        "description": project.description,
        "created_at": project.created_at,
        "role": membership.role if membership else "",
        "datasets": project.datasets.count(),
        "feature_configs": project.feature_configs.count(),
        "model_configs": project.model_configs.count(),
    }


@router.get("/projects/", response={200: list[ProjectOut], **refusals()})
def list_projects(request):
    return [_project_out(p, request.user) for p in Project.objects.for_user(request.user)]


@router.post("/projects/", response={201: ProjectOut, **refusals(400, 409, 422)})
def create_project(request, payload: ProjectIn):
    project = services.create_project(request.user, payload.name, payload.description)
    audit.record(request, audit.Action.CREATE, project, changes=payload.model_dump())
    return Status(201, _project_out(project, request.user))


@router.get("/projects/{project_id}/", response={200: ProjectOut, **refusals(404, 422)})
def get_project(request, project_id: int):
    return _project_out(project_for_user(request.user, project_id), request.user)


@router.patch("/projects/{project_id}/", response={200: ProjectOut, **refusals(400, 403, 404, 422)})
def update_project(request, project_id: int, payload: ProjectPatch):
    project = owned_project_for_user(request.user, project_id)
    if "description" in payload.model_fields_set:
        project.description = payload.description
        with transaction.atomic():
            project.save(update_fields=["description", "updated_at"])
            audit.record(request, audit.Action.UPDATE, project, changes={"description": payload.description})
    return _project_out(project, request.user)


@router.delete("/projects/{project_id}/", response={204: None, **refusals(403, 404, 409, 422)})
def delete_project(request, project_id: int):
    project = owned_project_for_user(request.user, project_id)
    with transaction.atomic(), audit.recording(request, audit.Action.DELETE, project):
        project.delete()
    return Status(204, None)


@router.get("/projects/{project_id}/members/", response={200: list[MemberOut], **refusals(404, 422)})
def list_members(request, project_id: int):
    project = project_for_user(request.user, project_id)
    return [{"username": m.user.username, "role": m.role} for m in project.memberships.select_related("user")]


@router.post("/projects/{project_id}/members/", response={201: MemberOut, **refusals(400, 403, 404, 409, 422)})
def add_member(request, project_id: int, payload: MemberIn):
    project = owned_project_for_user(request.user, project_id)
    with transaction.atomic():
        before = project.memberships.filter(user__username=payload.username).values_list("role", flat=True).first()
        membership = services.add_member(project, payload.username, payload.role)
        if membership.role != before:
            audit.record(
                request,
                audit.Action.MEMBER_CHANGE if before else audit.Action.MEMBER_ADD,
                project,
                changes={
                    "username": membership.user.username,
                    "role": membership.role,
                    **({"previous_role": before} if before else {}),
                },
            )
    return Status(201, {"username": membership.user.username, "role": membership.role})
