"""Training runs: a full pipeline execution, its live progress and its outcome."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from ml_platform.datasets.models import Dataset
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.projects.models import Project
from ml_platform.registry.models import RegisteredModel
from ml_pipeline.spec import STAGES


class InvalidTransition(Exception):
    def __init__(self, run_id: int, current: str, wanted: str):
        super().__init__(f"run {run_id} cannot go from {current} to {wanted}")
        self.current, self.wanted = current, wanted


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


class TrainingRun(models.Model):
    """One execution of the pipeline: a training run of a named model, or an experiment.

    An **experiment** (a quick test) is the same record run through the same
    queue, worker and stages, without the Pusher and usually on a sample; its
    metrics rank it among the project's best experiments and it can be
    promoted to a training run (``source_experiment``). Experiments and
    training runs are numbered separately ("Exp #3", "recs #12").

    Status transitions (anything else is refused, see :meth:`transition`)::

        scheduled  -> pending, cancelled
        pending    -> submitting, running, cancelled, failed
        submitting -> running, failed, cancelled
        running    -> completed, not_blessed, failed, cancelled,
                      pending (its worker was lost and the run is resumed)

    completed, not_blessed, failed and cancelled are terminal.
    """

    PENDING, SCHEDULED, SUBMITTING, RUNNING = "pending", "scheduled", "submitting", "running"
    COMPLETED, FAILED, CANCELLED, NOT_BLESSED = "completed", "failed", "cancelled", "not_blessed"
    STATUSES = [(s, s.replace("_", " ").capitalize()) for s in
                (PENDING, SCHEDULED, SUBMITTING, RUNNING, COMPLETED, FAILED, CANCELLED, NOT_BLESSED)]
    TERMINAL = (COMPLETED, FAILED, CANCELLED, NOT_BLESSED)
    ACTIVE = (PENDING, SUBMITTING, RUNNING)
    TRANSITIONS = {
        SCHEDULED: {PENDING, CANCELLED},
        PENDING: {SUBMITTING, RUNNING, CANCELLED, FAILED},
        SUBMITTING: {RUNNING, FAILED, CANCELLED},
        RUNNING: {COMPLETED, NOT_BLESSED, FAILED, CANCELLED, PENDING},
    }

    TRAINING, EXPERIMENT = "training", "experiment"
    KINDS = [(TRAINING, "Training run"), (EXPERIMENT, "Experiment")]

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    kind = models.CharField(max_length=20, choices=KINDS, default=TRAINING)
    run_number = models.PositiveIntegerField(help_text="Counted per project and kind")
    name = models.CharField(max_length=200, blank=True,
                            help_text="The registered model's name (an experiment's optional label)")
    description = models.TextField(blank=True)
    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.SET_NULL, null=True, blank=True,
                                         related_name="versions")
    rerun_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="reruns")
    source_experiment = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True,
                                          related_name="promoted_runs", limit_choices_to={"kind": EXPERIMENT})
    from_stage = models.CharField(max_length=30, blank=True,
                                  help_text="Recompute from this stage on; earlier stages are reused when their "
                                            "fingerprints still match")
    config_diff = models.JSONField(default=list, blank=True,
                                   help_text="[{field, before, after}] against the run this one reruns")

    # What the run was made from, and frozen snapshots of it at creation.
    dataset = models.ForeignKey(Dataset, on_delete=models.SET_NULL, null=True, related_name="training_runs")
    feature_config = models.ForeignKey(FeatureConfig, on_delete=models.SET_NULL, null=True, related_name="training_runs")
    model_config = models.ForeignKey(ModelConfig, on_delete=models.SET_NULL, null=True, related_name="training_runs")
    model_type = models.CharField(max_length=20)
    dataset_snapshot = models.JSONField()
    feature_config_snapshot = models.JSONField()
    model_config_snapshot = models.JSONField()
    split_config = models.JSONField(default=dict)
    training_params = models.JSONField(default=dict)
    gpu_config = models.JSONField(default=dict)
    evaluator_config = models.JSONField(default=dict)
    schedule_config = models.JSONField(default=dict)
    spec = models.JSONField(help_text="The complete pipeline spec the worker runs")

    # Progress.
    status = models.CharField(max_length=20, choices=STATUSES, default=PENDING, db_index=True)
    stages = models.JSONField(default=dict, help_text="stage -> {status, started_at, ended_at, summary, ...}")
    current_stage = models.CharField(max_length=30, blank=True)
    current_epoch = models.IntegerField(null=True, blank=True)
    total_epochs = models.IntegerField(null=True, blank=True)
    resources = models.JSONField(default=dict, blank=True)
    cancel_requested = models.BooleanField(default=False)
    worker_id = models.CharField(max_length=100, blank=True)
    worker_pid = models.IntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    pipeline_run_id = models.CharField(max_length=100, blank=True)

    # Outcome.
    final_metrics = models.JSONField(default=dict, blank=True)
    blessed = models.BooleanField(null=True)
    blessing_reasons = models.JSONField(default=list, blank=True)
    artifacts = models.JSONField(default=dict, blank=True, help_text="stage -> manifest (type, uri, inputs)")
    cost_usd = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    error_message = models.TextField(blank=True)
    error_stage = models.CharField(max_length=30, blank=True)
    error_traceback = models.TextField(blank=True)
    mlflow_run_id = models.CharField(max_length=100, blank=True)
    registry_version = models.PositiveIntegerField(null=True, blank=True, help_text="Version in the model registry")
    registered_at = models.DateTimeField(null=True, blank=True)
    webhook_secret = models.CharField(max_length=100, default=new_webhook_secret)

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["project", "kind", "run_number"],
                                               name="run_number_unique_per_kind")]
        indexes = [
            models.Index(fields=["project", "kind", "-created_at"], name="run_project_recent_idx"),
            # The list's status filters (bench/api.py: counts went from ~21 ms to under 1 ms at 10,000 runs).
            models.Index(fields=["project", "kind", "status", "-created_at"], name="run_project_status_idx"),
        ]

    def __str__(self) -> str:
        if self.kind == self.EXPERIMENT:
            return f"Exp #{self.run_number}" + (f" {self.name}" if self.name else "")
        return f"{self.name} #{self.run_number}"

    @property
    def is_experiment(self) -> bool:
        return self.kind == self.EXPERIMENT

    def outcome_status(self, pipeline_completed: bool, blessed: bool | None) -> str:
        """The final status for a pipeline's outcome; an experiment is only ranked, never pushed, so its
        evaluator verdict does not make it not_blessed."""
        if not pipeline_completed:
            return self.FAILED
        return self.NOT_BLESSED if blessed is False and not self.is_experiment else self.COMPLETED

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        return ((self.completed_at or timezone.now()) - self.started_at).total_seconds()

    @classmethod
    def next_run_number(cls, project, kind: str = TRAINING) -> int:
        last = cls.objects.filter(project=project, kind=kind).order_by("-run_number").values_list("run_number", flat=True).first()
        return (last or 0) + 1

    @property
    def serving_model_path(self) -> str | None:
        """The exported SavedModel, when the Pusher produced one."""
        pusher = (self.artifacts or {}).get("Pusher")
        return f"{pusher['uri']}/output/serving_model" if pusher else None

    def transition(self, wanted: str, **fields) -> None:
        """Move to ``wanted`` if the current status allows it, atomically.

        The guarded UPDATE (``WHERE status IN allowed sources``) makes two
        writers racing (a cancel and a completion, a webhook and the worker)
        agree: exactly one wins; the loser gets InvalidTransition.
        """
        sources = [s for s, targets in self.TRANSITIONS.items() if wanted in targets]
        now = timezone.now()
        if wanted == self.RUNNING:
            fields.setdefault("started_at", self.started_at or now)
        if wanted in self.TERMINAL:
            fields.setdefault("completed_at", now)
        with transaction.atomic():
            updated = TrainingRun.objects.filter(pk=self.pk, status__in=sources).update(
                status=wanted, updated_at=now, **fields)
            if updated != 1:
                current = TrainingRun.objects.filter(pk=self.pk).values_list("status", flat=True).first()
                raise InvalidTransition(self.pk, current or "deleted", wanted)
        self.refresh_from_db()


class TrainingMetricsHistory(models.Model):
    """One row per (run, epoch), upserted: a repeated epoch report replaces the row."""

    training_run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metrics_history")
    epoch = models.PositiveIntegerField()
    loss = models.FloatField(null=True)
    val_loss = models.FloatField(null=True)
    recall_at_5 = models.FloatField(null=True)
    recall_at_10 = models.FloatField(null=True)
    recall_at_50 = models.FloatField(null=True)
    recall_at_100 = models.FloatField(null=True)
    rmse = models.FloatField(null=True)
    mae = models.FloatField(null=True)
    metrics = models.JSONField(default=dict, help_text="every scalar the Trainer reported")
    histograms = models.JSONField(default=dict, blank=True)
    resources = models.JSONField(default=dict, blank=True)
    recorded_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["epoch"]
        constraints = [models.UniqueConstraint(fields=["training_run", "epoch"], name="one_row_per_epoch")]


def empty_stage_table(selected=STAGES) -> dict:
    """Every stage pending; those the run does not include (an experiment's Pusher) skipped."""
    return {stage: {"status": "pending" if stage in selected else "skipped"} for stage in STAGES}
