"""Training schedules: recurring retraining of one registered model, and the record of each time one fired."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models

from ml_platform.datasets.models import Dataset
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.projects.models import Project
from ml_platform.registry.models import RegisteredModel
from ml_platform.schedules import timing
from ml_platform.training.models import TrainingRun, new_webhook_secret


class ScheduleType(models.TextChoices):
    ONCE = timing.ONCE, "Once"
    HOURLY = timing.HOURLY, "Hourly"
    DAILY = timing.DAILY, "Daily"
    WEEKLY = timing.WEEKLY, "Weekly"
    MONTHLY = timing.MONTHLY, "Monthly"


class ScheduleStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"  # a once that fired
    CANCELLED = "cancelled", "Cancelled"


class OnBlessed(models.TextChoices):
    NOTHING = "nothing", "Nothing (review it first)"
    PUSH = "push", "Push to the registry"
    PUSH_AND_DEPLOY = "push_and_deploy", "Push and deploy"


class OverlapPolicy(models.TextChoices):
    SKIP = "skip", "Skip the occurrence"
    QUEUE = "queue", "Run it after the previous run"
    CANCEL_PREVIOUS = "cancel_previous", "Cancel the previous run"


class TrainingSchedule(models.Model):
    """Retraining of one registered model (one schedule per model), from a configuration frozen at creation.

    ``next_run_at`` is the next occurrence in UTC (computed in the schedule's
    zone by :mod:`ml_platform.schedules.timing`), None while paused or once
    over. A scheduler owns an occurrence by moving ``next_run_at`` past it
    with a guarded UPDATE (see ``services.claim_due``), so two schedulers
    never fire the same one.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_schedules")
    registered_model = models.OneToOneField(RegisteredModel, on_delete=models.CASCADE, related_name="schedule")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)

    schedule_type = models.CharField(max_length=10, choices=ScheduleType.choices)
    scheduled_datetime = models.DateTimeField(null=True, blank=True, help_text="once: the instant it fires")
    schedule_time = models.TimeField(null=True, blank=True, help_text="hourly: its minute; otherwise the time of day")
    schedule_day_of_week = models.PositiveSmallIntegerField(null=True, blank=True, help_text="0 = Monday")
    schedule_day_of_month = models.PositiveSmallIntegerField(null=True, blank=True)
    schedule_timezone = models.CharField(max_length=64, default="UTC", help_text="An IANA zone")

    # The training configuration, frozen when the schedule is made (every firing trains the same).
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="training_schedules")
    feature_config = models.ForeignKey(FeatureConfig, on_delete=models.PROTECT, related_name="training_schedules")
    model_config = models.ForeignKey(ModelConfig, on_delete=models.PROTECT, related_name="training_schedules")
    source_run = models.ForeignKey(
        TrainingRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="schedules_made"
    )
    base_experiment = models.ForeignKey(
        TrainingRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="schedules_based"
    )
    split_config = models.JSONField(default=dict, blank=True)
    training_params = models.JSONField(default=dict, blank=True)
    gpu_config = models.JSONField(default=dict, blank=True)
    evaluator_config = models.JSONField(default=dict, blank=True)
    on_blessed = models.CharField(max_length=20, choices=OnBlessed.choices, default=OnBlessed.NOTHING)
    overlap_policy = models.CharField(max_length=20, choices=OverlapPolicy.choices, default=OverlapPolicy.SKIP)
    max_consecutive_failures = models.PositiveSmallIntegerField(default=3, help_text="Paused after that many")

    backend_job_name = models.CharField(max_length=500, blank=True, help_text="An external scheduler's job")
    webhook_secret = models.CharField(
        max_length=100, default=new_webhook_secret, help_text="Signs an external scheduler's calls (webhook.py)"
    )

    status = models.CharField(max_length=10, choices=ScheduleStatus.choices, default=ScheduleStatus.ACTIVE)
    status_reason = models.CharField(max_length=500, blank=True, help_text="Why it is paused, when it paused itself")
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    total_runs = models.PositiveIntegerField(default=0)
    successful_runs = models.PositiveIntegerField(default=0)
    failed_runs = models.PositiveIntegerField(default=0)
    skipped_runs = models.PositiveIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["status", "next_run_at"], name="schedule_due_idx")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == ScheduleStatus.ACTIVE

    @property
    def is_recurring(self) -> bool:
        return self.schedule_type != ScheduleType.ONCE

    @property
    def success_rate(self) -> float | None:
        """Percent of the runs that ended that succeeded (blessed or not, a run that trained is a success)."""
        ended = self.successful_runs + self.failed_runs
        return None if ended == 0 else round(100 * self.successful_runs / ended, 1)

    def recurrence(self) -> timing.Recurrence:
        once_at: datetime | None = None
        if self.scheduled_datetime is not None:
            once_at = self.scheduled_datetime.astimezone(timing.zone(self.schedule_timezone)).replace(tzinfo=None)
        return timing.Recurrence(
            schedule_type=self.schedule_type,
            timezone=self.schedule_timezone,
            at_time=self.schedule_time,
            day_of_week=self.schedule_day_of_week,
            day_of_month=self.schedule_day_of_month,
            once_at=once_at,
        )

    def describe(self) -> str:
        return self.recurrence().describe()


class FiringStatus(models.TextChoices):
    CLAIMED = "claimed", "Claimed"  # the occurrence is owned; its run is being created
    QUEUED = "queued", "Waiting for the previous run"  # the queue policy: fired once that one ends
    RUNNING = "running", "Run queued or running"
    SUCCEEDED = "succeeded", "Succeeded"
    NOT_BLESSED = "not_blessed", "Not blessed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    SKIPPED = "skipped", "Skipped"


class ActionState(models.TextChoices):
    """A blessed run's push (and deploy), done by the worker's action child off the tick (scheduler.py)."""

    NONE = "", "Nothing to do"
    PENDING = "pending", "To push (and deploy)"
    ACTING = "acting", "Pushing (and asking for the deploy)"
    DEPLOYING = "deploying", "Deploying (the deploy jobs carry it out)"
    DONE = "done", "Done"


class FiringTrigger(models.TextChoices):
    OCCURRENCE = "occurrence", "Scheduled occurrence"
    MANUAL = "manual", "Triggered by hand"


class ScheduleFiring(models.Model):
    """One time a schedule fired (or was skipped): the occurrence, who fired it, its run and how it ended.

    An occurrence has at most one firing (a unique constraint), whichever
    scheduler (the worker's, an external one's webhook) got there first.
    """

    schedule = models.ForeignKey(TrainingSchedule, on_delete=models.CASCADE, related_name="firings")
    trigger = models.CharField(max_length=12, choices=FiringTrigger.choices, default=FiringTrigger.OCCURRENCE)
    scheduled_for = models.DateTimeField(help_text="The occurrence (UTC); a manual trigger's moment")
    fired_by = models.CharField(max_length=100, help_text="The worker, 'webhook', or the user")
    run = models.ForeignKey(TrainingRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="firings")
    status = models.CharField(max_length=12, choices=FiringStatus.choices, default=FiringStatus.CLAIMED)
    reason = models.TextField(blank=True, help_text="Why it was skipped or failed")
    blessed_action = models.CharField(max_length=500, blank=True, help_text="What was done with a blessed run")
    action_state = models.CharField(max_length=10, choices=ActionState.choices, default=ActionState.NONE, blank=True)
    action_claimed_at = models.DateTimeField(null=True, blank=True, help_text="When a worker took the action")
    action_attempts = models.PositiveSmallIntegerField(default=0)
    data_signature = models.JSONField(
        default=dict, blank=True, help_text="The dataset's rows when it fired: the next one skips if unchanged"
    )
    created_at = models.DateTimeField()
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-scheduled_for", "-id"]
        indexes = [models.Index(fields=["action_state"], name="firing_action_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["schedule", "scheduled_for"],
                condition=models.Q(trigger="occurrence"),
                name="one_firing_per_occurrence",
            )
        ]

    def __str__(self) -> str:
        return f"{self.schedule} @ {self.scheduled_for:%Y-%m-%d %H:%M}Z"


class NotifyEvent(models.TextChoices):
    RUN_FAILED = "run_failed", "A run failed"
    NOT_BLESSED = "not_blessed", "A run was not blessed"
    AUTO_PAUSED = "auto_paused", "The schedule paused itself"
    DEPLOYED = "deployed", "A new version was deployed"
    DEPLOY_FAILED = "deploy_failed", "A scheduled deploy failed"


class NotificationTarget(models.Model):
    """Where schedules' news goes: an e-mail address, or a URL that gets signed JSON (webhook).

    A target belongs to one schedule, or to a project: then it hears from every schedule of the project (each
    schedule's news goes to its own targets and its project's).
    """

    EMAIL, WEBHOOK = "email", "webhook"
    KINDS = [(EMAIL, "E-mail"), (WEBHOOK, "Webhook")]

    schedule = models.ForeignKey(
        TrainingSchedule, on_delete=models.CASCADE, null=True, blank=True, related_name="notification_targets"
    )
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, null=True, blank=True, related_name="notification_targets"
    )
    kind = models.CharField(max_length=10, choices=KINDS)
    address = models.CharField(max_length=500, help_text="An e-mail address, or an http(s) URL")
    events = models.JSONField(default=list, help_text="NotifyEvent values; empty: all of them")
    secret = models.CharField(max_length=100, default=new_webhook_secret, help_text="Signs a webhook's bodies")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(schedule__isnull=False, project__isnull=True)
                | models.Q(schedule__isnull=True, project__isnull=False),
                name="target_of_a_schedule_or_a_project",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.address}"

    def wants(self, event: str) -> bool:
        return not self.events or event in self.events


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # not sent yet, or to be retried at next_attempt_at
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"  # gave up after the last attempt


class NotificationDelivery(models.Model):
    """One notification to one target: what was sent, each attempt's answer, retried with back-off."""

    target = models.ForeignKey(NotificationTarget, on_delete=models.CASCADE, related_name="deliveries")
    schedule = models.ForeignKey(TrainingSchedule, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=20, choices=NotifyEvent.choices)
    subject = models.CharField(max_length=300)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True, help_text="The answer, or why there was none")
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
