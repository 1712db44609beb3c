from django.conf import settings
from django.db import models

from ml_platform.datasets.models import Dataset
from ml_platform.projects.models import Project


class FeatureConfig(models.Model):
    """How a dataset's columns become the buyer and product tower inputs.

    ``config`` holds ml_pipeline.config.features.FeatureConfig as JSON,
    validated against the dataset's mapped columns before it is saved.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="feature_configs")
    # RESTRICT: a dataset in use cannot be deleted on its own, but its project can.
    dataset = models.ForeignKey(Dataset, on_delete=models.RESTRICT, related_name="feature_configs")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    config = models.JSONField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="feature_config_name_unique_in_project")
        ]

    def __str__(self) -> str:
        return self.name


class ModelConfig(models.Model):
    """Tower architectures, rating head, optimizer and retrieval settings.

    ``config`` holds ml_pipeline.config.model.ModelConfig as JSON.
    ``feature_config`` is the pairing its parameter counts are shown for; a
    training run may pair it with another compatible feature config.
    """

    RETRIEVAL, RANKING, MULTITASK = "retrieval", "ranking", "multitask"
    MODEL_TYPES = [(RETRIEVAL, "Retrieval"), (RANKING, "Ranking"), (MULTITASK, "Hybrid (multitask)")]

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_configs")
    feature_config = models.ForeignKey(
        FeatureConfig, on_delete=models.SET_NULL, null=True, blank=True, related_name="model_configs"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    model_type = models.CharField(max_length=20, choices=MODEL_TYPES)
    config = models.JSONField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="model_config_name_unique_in_project")]

    def __str__(self) -> str:
        return self.name
