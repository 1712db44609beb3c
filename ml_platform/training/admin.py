from django.contrib import admin

from ml_platform.training.models import TrainingMetricsHistory, TrainingRun


class MetricsInline(admin.TabularInline):
    model = TrainingMetricsHistory
    extra = 0
    fields = ("epoch", "loss", "val_loss", "recall_at_100", "rmse")
    readonly_fields = fields


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("__str__", "kind", "project", "model_type", "status", "runner", "current_stage", "created_at")
    list_filter = ("project", "kind", "status", "runner", "model_type")
    search_fields = ("name", "description")
    readonly_fields = ("webhook_secret", "last_event_at")
    inlines = [MetricsInline]
