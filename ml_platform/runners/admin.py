from django.contrib import admin

from ml_platform.runners.models import ProjectRunner, RemoteJob


@admin.register(RemoteJob)
class RemoteJobAdmin(admin.ModelAdmin):
    list_display = ("run", "backend", "state", "service_state", "resource_name", "submitted_at", "checked_at")
    list_filter = ("backend", "state")
    readonly_fields = [field.name for field in RemoteJob._meta.fields]


@admin.register(ProjectRunner)
class ProjectRunnerAdmin(admin.ModelAdmin):
    list_display = ("project", "runner", "updated_at")
