from django.contrib import admin

from ml_platform.deployment.models import Deployment, DeploymentEvent


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ("registered_model", "status", "version", "target", "endpoint_url", "deployed_at")
    list_filter = ("status", "target")
    search_fields = ("registered_model__name", "serving_name")
    readonly_fields = ("updated_at",)


@admin.register(DeploymentEvent)
class DeploymentEventAdmin(admin.ModelAdmin):
    list_display = ("at", "registered_model", "action", "version", "previous_version", "succeeded", "user")
    list_filter = ("action", "succeeded", "target")
    search_fields = ("registered_model__name", "message")
    readonly_fields = ("at",)
