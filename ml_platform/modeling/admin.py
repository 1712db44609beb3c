from django.contrib import admin

from ml_platform.modeling.models import FeatureConfig, ModelConfig


@admin.register(FeatureConfig)
class FeatureConfigAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "dataset", "updated_at")
    list_filter = ("project",)
    search_fields = ("name", "description")


@admin.register(ModelConfig)
class ModelConfigAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "model_type", "feature_config", "updated_at")
    list_filter = ("project", "model_type")
    search_fields = ("name", "description")
