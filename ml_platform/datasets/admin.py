from django.contrib import admin

from ml_platform.datasets.models import Dataset, Upload


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "source_kind", "previewed_at", "updated_at")
    list_filter = ("project",)
    search_fields = ("name", "description")
    readonly_fields = ("preview", "preview_error", "previewed_at")


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = ("original_name", "project", "size_bytes", "created_at")
    list_filter = ("project",)
