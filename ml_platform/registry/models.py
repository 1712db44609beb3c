from django.conf import settings
from django.db import models

from ml_platform.projects.models import Project


class RegisteredModel(models.Model):
    """A named model whose versions are the training runs that carry its name.

    Created when the first run with that name is set up; a schedule attaches
    to it, and at most one of its versions is deployed at a time.
    """

    MODEL_TYPES = [("retrieval", "Retrieval"), ("ranking", "Ranking"), ("multitask", "Hybrid (multitask)")]

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="registered_models")
    name = models.CharField(max_length=200)
    model_type = models.CharField(max_length=20, choices=MODEL_TYPES)
    description = models.TextField(blank=True)
    mlflow_model_name = models.CharField(max_length=300, blank=True)
    first_registered_at = models.DateTimeField(null=True, blank=True)
    latest_version = models.IntegerField(null=True, blank=True)
    total_versions = models.IntegerField(default=0)
    deployed_version = models.IntegerField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="registered_model_name_unique")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_registered(self) -> bool:
        return self.first_registered_at is not None
