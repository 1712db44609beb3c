from django.contrib import admin

from ml_platform.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the trail is written by the platform, never edited or pruned by hand."""

    list_display = (
        "created_at",
        "actor_label",
        "via",
        "action",
        "object_type",
        "object_label",
        "project_label",
        "address",
    )
    list_filter = ("action", "via", "object_type")
    search_fields = ("actor_label", "token_name", "object_label", "project_label", "address")
    date_hierarchy = "created_at"
    list_select_related = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
