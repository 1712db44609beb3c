from django.contrib import admin

from ml_platform.registry.models import RegisteredModel


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "model_type", "total_versions", "latest_version", "deployed_version")
    list_filter = ("project", "model_type")
    search_fields = ("name", "description")
