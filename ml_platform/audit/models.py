"""The audit trail: one row per state-changing action, written by ``services.record``.

A row describes its object as it was (type, id, label) rather than pointing
at it, so the trail outlives what it describes: deleting a dataset, a project
or a user leaves their events in place (the project column has no database
constraint and is never cascaded).
"""

import json

from django.conf import settings
from django.db import models
from django.utils import timezone

from ml_platform.projects.models import Project


class AuditEvent(models.Model):
    class Action(models.TextChoices):
        CREATE = "create", "created"
        UPDATE = "update", "edited"
        DELETE = "delete", "deleted"
        UPLOAD = "upload", "uploaded"
        REFRESH = "refresh", "refreshed"
        CANCEL = "cancel", "cancelled"
        RERUN = "rerun", "reran"
        PROMOTE = "promote", "promoted"
        PUSH = "push", "pushed"
        DEPLOY = "deploy", "deployed"
        UNDEPLOY = "undeploy", "undeployed"
        ROLLBACK = "rollback", "rolled back"
        FINISH = "finish", "finished"
        SCHEDULE_CREATE = "schedule.create", "scheduled"
        SCHEDULE_UPDATE = "schedule.update", "changed the schedule of"
        SCHEDULE_DELETE = "schedule.delete", "unscheduled"
        MEMBER_ADD = "member.add", "added a member to"
        MEMBER_CHANGE = "member.change", "changed a member's role in"
        MEMBER_REMOVE = "member.remove", "removed a member from"
        TOKEN_ISSUE = "token.issue", "issued"
        TOKEN_REVOKE = "token.revoke", "revoked"

    class Via(models.TextChoices):
        SESSION = "session", "session"
        TOKEN = "token", "API token"
        SYSTEM = "system", "system"

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Who: the user (kept as a name too, for when the account is gone), or a system actor's name.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(max_length=150, help_text="The username then, or 'worker' / 'remote runner'")
    via = models.CharField(max_length=10, choices=Via.choices)
    token_name = models.CharField(max_length=100, blank=True, help_text="The API token's name, when via a token")
    address = models.GenericIPAddressField(null=True, blank=True, help_text="The client's address")
    # What.
    action = models.CharField(max_length=20, choices=Action.choices)
    object_type = models.CharField(max_length=100, help_text="app_label.model, e.g. datasets.dataset")
    object_id = models.BigIntegerField()
    object_label = models.CharField(max_length=200, help_text="The object's name at the time")
    project = models.ForeignKey(
        Project, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="+"
    )
    project_label = models.CharField(max_length=100, blank=True)
    changes = models.JSONField(default=dict, blank=True, help_text="What changed, secrets masked")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="audit_project_recent_idx"),
            models.Index(fields=["object_type", "object_id", "-created_at"], name="audit_object_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.get_action_display()} {self.object_label}"

    @property
    def changes_text(self) -> str:
        return json.dumps(self.changes, sort_keys=True, ensure_ascii=False) if self.changes else ""
