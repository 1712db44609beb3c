"""The notification targets' forms, on a schedule's page and on its project's notifications page (targets
that hear from every schedule of the project). Thin: the rules are ``services.add_notification_target``'s."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from ml_platform.audit import services as audit
from ml_platform.core.errors import Invalid
from ml_platform.core.fields import MAX_ID
from ml_platform.projects.access import project_for_user
from ml_platform.schedules import services
from ml_platform.schedules.models import NotificationDelivery, NotificationTarget, NotifyEvent


def _target_id(value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if not 1 <= number <= MAX_ID:
        raise Http404("No such notification target")
    return number


def target_action(owner, action: str, post) -> dict:
    """Add a target of ``owner`` (a schedule or a project) from the form, or remove one; the audit changes."""
    if action == "stop-notifying":
        target = owner.notification_targets.filter(pk=_target_id(post.get("target_id"))).first()
        if target is None:
            raise Http404("No such notification target")
        target.delete()
        return {"stop_notifying": str(target)}
    if action != "notify":
        raise Http404("No such action")
    kind = post.get("kind") if post.get("kind") in dict(NotificationTarget.KINDS) else NotificationTarget.EMAIL
    events = [e for e in post.getlist("events") if e in NotifyEvent.values]
    target = services.add_notification_target(owner, kind, post.get("address", ""), events)
    return {"notify": {"kind": target.kind, "address": target.address, "events": target.events}}


def _context(project, problem: str = "") -> dict:
    deliveries = NotificationDelivery.objects.filter(target__project=project).select_related("target", "schedule")
    return {
        "project": project,
        "nav_section": "models",
        "problem": problem,
        "targets": list(project.notification_targets.all()),
        "schedules": list(project.training_schedules.order_by("name", "id")),
        "deliveries": list(deliveries[:20]),
        "notify_events": NotifyEvent.choices,
    }


def project_notifications(request, project_id: int):
    project = project_for_user(request.user, project_id)
    return render(request, "schedules/project_notifications.html", _context(project))


@require_POST
def project_notification_action(request, project_id: int, action: str):
    project = project_for_user(request.user, project_id)
    try:
        changes = target_action(project, action, request.POST)
    except Invalid as refused:
        message = "; ".join(f"{p.field}: {p.message}" for p in refused.problems) or refused.message
        return render(request, "schedules/project_notifications.html", _context(project, message), status=422)
    audit.record(request, audit.Action.UPDATE, project, changes=changes)
    return redirect("project-notifications", project_id=project.pk)
