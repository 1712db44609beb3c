"""Deployments: which version of a registered model is served where, and every change to that."""

from django.conf import settings
from django.db import models

from ml_platform.registry.models import RegisteredModel
from ml_platform.training.models import TrainingRun


class Target(models.TextChoices):
    LOCAL = "local", "Local serving endpoint"
    VERTEX_AI = "vertex_ai", "Vertex AI endpoint"
    CLOUD_RUN = "cloud_run", "Cloud Run"


class DeploymentStatus(models.TextChoices):
    NONE = "none", "Not deployed"
    DEPLOYING = "deploying", "Deploying"
    DEPLOYED = "deployed", "Deployed"
    FAILED = "failed", "Failed"


class DeploymentState(models.TextChoices):
    """Where the last deploy, rollback or undeploy request is: the pages and the API show it."""

    NONE = "none", "Not deployed"
    LOADING = "loading", "Loading"  # a deploy or rollback is being carried out by the worker
    STOPPING = "stopping", "Stopping"  # an undeploy is being carried out by the worker
    SERVING = "serving", "Serving"
    FAILED = "failed", "Failed"  # the last request failed (``message`` says why; a serving version goes on)


class DeploymentAction(models.TextChoices):
    DEPLOY = "deploy", "Deploy"
    UNDEPLOY = "undeploy", "Undeploy"
    ROLLBACK = "rollback", "Rollback"


class Deployment(models.Model):
    """The current deployment state of one registered model (at most one deployed version at a time).

    ``none``: nothing deployed; ``deploying``: a version is being brought up
    (the previous one, if any, keeps answering); ``deployed``: ``version``
    answers at ``endpoint_url``; ``failed``: the last deploy failed and nothing
    is deployed (when a previous version was serving, it stays ``deployed``
    and ``message`` says what failed).
    """

    # Aliases of the choices' members, so ``Deployment.DEPLOYED`` reads on unchanged where it is used.
    NONE, DEPLOYING, DEPLOYED, FAILED = (
        DeploymentStatus.NONE,
        DeploymentStatus.DEPLOYING,
        DeploymentStatus.DEPLOYED,
        DeploymentStatus.FAILED,
    )

    registered_model = models.OneToOneField(RegisteredModel, on_delete=models.CASCADE, related_name="deployment")
    target = models.CharField(max_length=20, choices=Target.choices, default=Target.LOCAL)
    status = models.CharField(max_length=20, choices=DeploymentStatus.choices, default=DeploymentStatus.NONE)
    version = models.PositiveIntegerField(null=True, blank=True, help_text="The registry version deployed")
    training_run = models.ForeignKey(TrainingRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    serving_name = models.CharField(max_length=320, blank=True, help_text="The model's name at the endpoint")
    endpoint_url = models.CharField(max_length=500, blank=True)
    deployed_at = models.DateTimeField(null=True, blank=True)
    deployed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    message = models.TextField(blank=True, help_text="What the last action reported (the error when it failed)")
    # The request in flight (one at a time per model), carried out by the worker (deployment/jobs.py): the web
    # server only records it, so no web worker waits for a model to load.
    state = models.CharField(max_length=20, choices=DeploymentState.choices, default=DeploymentState.NONE)
    pending_action = models.CharField(max_length=20, choices=DeploymentAction.choices, blank=True)
    pending_version = models.PositiveIntegerField(null=True, blank=True)
    pending_target = models.CharField(max_length=20, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    requested_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=200, blank=True, help_text="The worker carrying the request out")
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="Refreshed while it is carried out")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        version = f" v{self.version}" if self.version is not None else ""
        return f"{self.registered_model}{version}: {self.status}"


class DeploymentEvent(models.Model):
    """One deploy, undeploy or rollback, successful or not: the deployment history."""

    DEPLOY, UNDEPLOY, ROLLBACK = DeploymentAction.DEPLOY, DeploymentAction.UNDEPLOY, DeploymentAction.ROLLBACK

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="deployment_events")
    action = models.CharField(max_length=20, choices=DeploymentAction.choices)
    target = models.CharField(max_length=20, choices=Target.choices, default=Target.LOCAL)
    version = models.PositiveIntegerField(null=True, blank=True, help_text="The version deployed (or undeployed)")
    previous_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="The version that was deployed before"
    )
    succeeded = models.BooleanField(default=True)
    message = models.TextField(blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["registered_model", "-at"], name="deploy_event_model_recent_idx")]

    def __str__(self) -> str:
        return f"{self.action} {self.registered_model} v{self.version}"
