from django.conf import settings
from django.db import models

from ml_platform.projects.models import Project


def upload_path(instance: "Upload", filename: str) -> str:
    return f"uploads/project-{instance.project_id}/{filename}"


class Upload(models.Model):
    """A CSV or Parquet file uploaded into a project, usable as a dataset source."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="uploads")
    file = models.FileField(upload_to=upload_path, max_length=500)
    original_name = models.CharField(max_length=255)
    size_bytes = models.BigIntegerField()
    columns = models.JSONField(default=list, help_text="[{name, type}] as DuckDB reads the file")
    csv_options = models.JSONField(
        default=dict, blank=True, help_text="How the file was read (ml_pipeline.config.dataset.CsvOptions)"
    )
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.original_name


class Dataset(models.Model):
    """Where a project's interaction data comes from and how it is read.

    ``source``, ``mapping`` and ``filters`` hold the JSON of the execution
    plane's schemas (ml_pipeline.config.dataset), validated by the service
    before they are saved; an upload source is stored as ``{"kind": "upload",
    "upload_id": N}`` and resolved to its file when the data is read.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    source = models.JSONField()
    mapping = models.JSONField()
    filters = models.JSONField(default=dict)
    preview = models.JSONField(null=True, blank=True)
    preview_error = models.TextField(blank=True)
    previewed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="dataset_name_unique_in_project")]

    def __str__(self) -> str:
        return self.name

    @property
    def source_kind(self) -> str:
        return self.source.get("kind", "")
