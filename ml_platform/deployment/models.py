"""Deployments: which version of a registered model is served where, and every change to that."""

from django.conf import settings
from django.db import models

from ml_platform.registry.models import RegisteredModel
from ml_platform.training.models import TrainingRun

TARGETS = [("local", "Local serving endpoint"), ("vertex_ai", "Vertex AI endpoint"), ("cloud_run", "Cloud Run")]


class Deployment(models.Model):
    """The current deployment state of one registered model (at most one deployed version at a time).

    ``none``: nothing deployed; ``deploying``: a version is being brought up
    (the previous one, if any, keeps answering); ``deployed``: ``version``
    answers at ``endpoint_url``; ``failed``: the last deploy failed and nothing
    is deployed (when a previous version was serving, it stays ``deployed``
    and ``message`` says what failed).
    """

    NONE, DEPLOYING, DEPLOYED, FAILED = "none", "deploying", "deployed", "failed"
    STATUSES = [(NONE, "Not deployed"), (DEPLOYING, "Deploying"), (DEPLOYED, "Deployed"), (FAILED, "Failed")]

    registered_model = models.OneToOneField(RegisteredModel, on_delete=models.CASCADE, related_name="deployment")
    target = models.CharField(max_length=20, choices=TARGETS, default="local")
    status = models.CharField(max_length=20, choices=STATUSES, default=NONE)
    version = models.PositiveIntegerField(null=True, blank=True, help_text="The registry version deployed")
    training_run = models.ForeignKey(TrainingRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    serving_name = models.CharField(max_length=320, blank=True, help_text="The model's name at the endpoint")
    endpoint_url = models.CharField(max_length=500, blank=True)
    deployed_at = models.DateTimeField(null=True, blank=True)
    deployed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                    related_name="+")
    message = models.TextField(blank=True, help_text="What the last action reported (the error when it failed)")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        version = f" v{self.version}" if self.version is not None else ""
        return f"{self.registered_model}{version}: {self.status}"


class DeploymentEvent(models.Model):
    """One deploy, undeploy or rollback, successful or not: the deployment history."""

    DEPLOY, UNDEPLOY, ROLLBACK = "deploy", "undeploy", "rollback"
    ACTIONS = [(DEPLOY, "Deploy"), (UNDEPLOY, "Undeploy"), (ROLLBACK, "Rollback")]

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="deployment_events")
    action = models.CharField(max_length=20, choices=ACTIONS)
    target = models.CharField(max_length=20, choices=TARGETS, default="local")
    version = models.PositiveIntegerField(null=True, blank=True, help_text="The version deployed (or undeployed)")
    previous_version = models.PositiveIntegerField(null=True, blank=True,
                                                   help_text="The version that was deployed before")
    succeeded = models.BooleanField(default=True)
    message = models.TextField(blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                             related_name="+")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["registered_model", "-at"], name="deploy_event_model_recent_idx")]

    def __str__(self) -> str:
        return f"{self.action} {self.registered_model} v{self.version}"
