"""A project's audit trail through the API: ``GET /projects/{id}/audit/`` (members only; outsiders get 404)."""

from __future__ import annotations

from datetime import datetime

from ninja import Query, Router, Schema
from pydantic import Field

from ml_platform.audit.models import AuditEvent
from ml_platform.core.errors import refusals
from ml_platform.core.fields import PAGE_MAX, Id
from ml_platform.projects.access import project_for_user

router = Router(tags=["audit"])


class AuditEventOut(Schema):
    id: int
    created_at: datetime
    actor: str = Field(description="The username, or 'worker' / 'remote runner'")
    via: str = Field(description="session, token or system")
    token_name: str = Field(description="The API token's name when via a token")
    address: str | None = Field(description="The client's IP address")
    action: str
    object_type: str = Field(description="app_label.model, e.g. datasets.dataset")
    object_id: int
    object_label: str = Field(description="The object's name at the time")
    changes: dict = Field(description="What changed (secrets masked)")


class AuditPage(Schema):
    count: int
    page: int
    page_size: int
    results: list[AuditEventOut]


@router.get("/projects/{project_id}/audit/", response={200: AuditPage, **refusals(404, 422)})
def list_audit_events(
    request,
    project_id: int,
    object_type: str | None = Query(
        None, max_length=100, pattern=r"^[a-z0-9_]+\.[a-z0-9_]+$", description="app_label.model, e.g. datasets.dataset"
    ),
    object_id: Id | None = None,
    action: str | None = Query(
        None, max_length=20, pattern=r"^[a-z.]+$", description="e.g. update, deploy, member.add"
    ),
    page: int = Query(1, ge=1, le=PAGE_MAX),
    page_size: int = Query(50, ge=1, le=200),
):
    """The project's events, newest first; ``object_type`` and ``object_id`` narrow them to one object."""
    events = AuditEvent.objects.filter(project=project_for_user(request.user, project_id))
    if object_type:
        events = events.filter(object_type=object_type)
    if object_id is not None:
        events = events.filter(object_id=object_id)
    if action:
        events = events.filter(action=action)
    count = events.count()
    start = (page - 1) * page_size
    rows = (
        events.values(
            "id",
            "created_at",
            "actor_label",
            "via",
            "token_name",
            "address",
            "action",
            "object_type",
            "object_id",
            "object_label",
            "changes",
        )[start : start + page_size]
        if start < count
        else []
    )
    return {
        "count": count,
        "page": page,
        "page_size": page_size,
        "results": [{"actor": row.pop("actor_label"), **row} for row in rows],
    }
