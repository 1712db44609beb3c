from django.contrib import admin

from ml_platform.schedules.models import ScheduleFiring, TrainingSchedule


@admin.register(TrainingSchedule)
class TrainingScheduleAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "registered_model", "schedule_type", "status", "next_run_at", "total_runs")
    list_filter = ("project", "schedule_type", "status")
    search_fields = ("name", "description")


@admin.register(ScheduleFiring)
class ScheduleFiringAdmin(admin.ModelAdmin):
    list_display = ("schedule", "scheduled_for", "trigger", "status", "run", "fired_by")
    list_filter = ("status", "trigger")
