"""Training runs: a full pipeline execution, its live progress and its outcome."""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, OuterRef, Subquery
from django.db.models.functions import Coalesce, Greatest

from ml_pipeline.spec import STAGES, StageStatus
from ml_platform.core import clock
from ml_platform.datasets.models import Dataset
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.projects.models import Project
from ml_platform.registry.models import RegisteredModel


class RunStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SCHEDULED = "scheduled", "Scheduled"
    SUBMITTING = "submitting", "Submitting"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    NOT_BLESSED = "not_blessed", "Not blessed"


class RunKind(models.TextChoices):
    TRAINING = "training", "Training run"
    EXPERIMENT = "experiment", "Experiment"


class Runner(models.TextChoices):
    LOCAL = "local", "Local worker"
    REMOTE = "remote", "Remote runner"


# The run's state machine, the one place its moves are written down (see TrainingRun.transition, the one place
# they are enforced): status -> the statuses it may move to. A status with no row is terminal.
RUN_TRANSITIONS: dict[RunStatus, set[RunStatus]] = {
    RunStatus.SCHEDULED: {RunStatus.PENDING, RunStatus.CANCELLED},
    RunStatus.PENDING: {RunStatus.SUBMITTING, RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.FAILED},
    RunStatus.SUBMITTING: {RunStatus.RUNNING, RunStatus.FAILED, RunStatus.CANCELLED},
    # pending again: its worker was lost and the run is resumed
    RunStatus.RUNNING: {
        RunStatus.COMPLETED,
        RunStatus.NOT_BLESSED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.PENDING,
    },
}
TERMINAL_STATUSES = tuple(s for s in RunStatus if s not in RUN_TRANSITIONS)
ACTIVE_STATUSES = (RunStatus.PENDING, RunStatus.SUBMITTING, RunStatus.RUNNING)


class InvalidTransition(Exception):
    def __init__(self, run_id: int, current: str, wanted: str):
        super().__init__(f"run {run_id} cannot go from {current} to {wanted}")
        self.current, self.wanted = current, wanted


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


class InvalidStageTransition(Exception):
    def __init__(self, stage: str, current: str, wanted: str):
        super().__init__(f"stage {stage} is {current}; it cannot become {wanted}")
        self.stage, self.current, self.wanted = stage, current, wanted


# The stage table's state machine, the one place its moves are written down. Every pipeline event, from the
# local worker's child or a remote runner's webhook, goes through DatabaseReporter, which refuses any other
# move. A stage that ended never starts again within its run: a resumed run reports the stages it reuses as
# cached. Repeating a status updates the same report. interrupted (resumed later) and cancelled come from
# the run's own transitions (see end_stages).
_ANY_NEXT = {
    StageStatus.RUNNING,
    StageStatus.COMPLETED,
    StageStatus.CACHED,
    StageStatus.SKIPPED,
    StageStatus.FAILED,
    StageStatus.INTERRUPTED,
    StageStatus.CANCELLED,
}
STAGE_TRANSITIONS: dict[StageStatus, set[StageStatus]] = {
    StageStatus.PENDING: _ANY_NEXT,
    StageStatus.RUNNING: _ANY_NEXT,
    StageStatus.INTERRUPTED: _ANY_NEXT,
    StageStatus.COMPLETED: {StageStatus.COMPLETED, StageStatus.CACHED},
    StageStatus.CACHED: {StageStatus.COMPLETED, StageStatus.CACHED},
    StageStatus.SKIPPED: {StageStatus.SKIPPED},
    StageStatus.FAILED: {StageStatus.FAILED},
    StageStatus.CANCELLED: {StageStatus.CANCELLED},
}
STAGE_DONE = (StageStatus.COMPLETED, StageStatus.CACHED, StageStatus.SKIPPED)


def check_stage_move(stage: str, current: str, wanted: str) -> None:
    """Raise InvalidStageTransition unless the stage table allows ``current`` -> ``wanted``."""
    if wanted not in STAGE_TRANSITIONS.get(current, set()):
        raise InvalidStageTransition(stage, current, wanted)


class TrainingRun(models.Model):
    """One execution of the pipeline: a training run of a named model, or an experiment.

    An **experiment** (a quick test) is the same record run through the same
    queue, worker and stages, without the Pusher and usually on a sample; its
    metrics rank it among the project's best experiments and it can be
    promoted to a training run (``source_experiment``). Experiments and
    training runs are numbered separately ("Exp #3", "recs #12").

    Status transitions are ``RUN_TRANSITIONS`` (anything else is refused,
    see :meth:`transition`); completed, not_blessed, failed and cancelled
    are terminal.

    The stage table follows (see :func:`end_stages`): a failed run's stages
    that were pending or running become ``interrupted``, a cancelled run's
    ``cancelled``; a requeued run's running stage becomes ``interrupted``.

    Who executes a run (``runner``): the local worker, or a **remote** runner
    reporting through signed webhooks. A run becomes remote when its first
    signed event takes it from pending (or submitting) to running, through
    the same guarded UPDATE the local worker claims runs with, so exactly one
    of the two gets it and the other is refused. That first event is the
    first moment the platform knows a remote runner has the run (there is no
    submit-to-a-remote-runner step in this installation), and it needs no
    change to any runner. The local worker never claims nor recovers a remote
    run, which has no local heartbeat: its liveness is its events
    (``last_event_at``), and cancelling it cancels it at once (its runner's
    next event is refused, which tells the runner to stop).
    """

    # Aliases of the choices' members (``TrainingRun.FAILED is RunStatus.FAILED``), so the hundred-odd
    # ``TrainingRun.FAILED`` in the code and tests read on unchanged.
    PENDING, SCHEDULED, SUBMITTING, RUNNING = (
        RunStatus.PENDING,
        RunStatus.SCHEDULED,
        RunStatus.SUBMITTING,
        RunStatus.RUNNING,
    )
    COMPLETED, FAILED, CANCELLED, NOT_BLESSED = (
        RunStatus.COMPLETED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.NOT_BLESSED,
    )
    TERMINAL, ACTIVE = TERMINAL_STATUSES, ACTIVE_STATUSES
    TRAINING, EXPERIMENT = RunKind.TRAINING, RunKind.EXPERIMENT
    LOCAL, REMOTE = Runner.LOCAL, Runner.REMOTE

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    kind = models.CharField(max_length=20, choices=RunKind.choices, default=RunKind.TRAINING)
    run_number = models.PositiveIntegerField(help_text="Counted per project and kind")
    name = models.CharField(
        max_length=200, blank=True, help_text="The registered model's name (an experiment's optional label)"
    )
    description = models.TextField(blank=True)
    registered_model = models.ForeignKey(
        RegisteredModel, on_delete=models.SET_NULL, null=True, blank=True, related_name="versions"
    )
    rerun_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="reruns")
    source_experiment = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="promoted_runs",
        limit_choices_to={"kind": RunKind.EXPERIMENT},
    )
    from_stage = models.CharField(
        max_length=30,
        blank=True,
        help_text="Recompute from this stage on; earlier stages are reused when their fingerprints still match",
    )
    config_diff = models.JSONField(
        default=list, blank=True, help_text="[{field, before, after}] against the run this one reruns"
    )

    # What the run was made from, and frozen snapshots of it at creation.
    dataset = models.ForeignKey(Dataset, on_delete=models.SET_NULL, null=True, related_name="training_runs")
    feature_config = models.ForeignKey(
        FeatureConfig, on_delete=models.SET_NULL, null=True, related_name="training_runs"
    )
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
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.PENDING, db_index=True)
    stages = models.JSONField(default=dict, help_text="stage -> {status, started_at, ended_at, summary, ...}")
    current_stage = models.CharField(max_length=30, blank=True)
    current_epoch = models.IntegerField(null=True, blank=True)
    total_epochs = models.IntegerField(null=True, blank=True)
    resources = models.JSONField(default=dict, blank=True)
    cancel_requested = models.BooleanField(default=False)
    worker_id = models.CharField(max_length=100, blank=True)
    worker_pid = models.IntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    runner = models.CharField(
        max_length=10,
        choices=Runner.choices,
        default=Runner.LOCAL,
        help_text="remote: taken by a runner reporting through webhooks (never by the worker)",
    )
    last_event_at = models.DateTimeField(null=True, blank=True, help_text="A remote run's latest accepted event")
    attempts = models.PositiveIntegerField(default=0)
    pipeline_run_id = models.CharField(max_length=100, blank=True)

    # Outcome.
    final_metrics = models.JSONField(default=dict, blank=True)
    blessed = models.BooleanField(null=True)
    blessing_reasons = models.JSONField(default=list, blank=True)
    artifacts = models.JSONField(default=dict, blank=True, help_text="stage -> manifest (type, uri, inputs)")
    # Stored by the transition that ends the run (see cost(): a running run's is computed, cost_so_far()).
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
        constraints = [
            models.UniqueConstraint(fields=["project", "kind", "run_number"], name="run_number_unique_per_kind")
        ]
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
        return ((self.completed_at or clock.now()) - self.started_at).total_seconds()

    def cost_so_far(self, until: datetime | None = None) -> Decimal:
        """GPU price per hour (``GPU_PRICES_PER_HOUR``) x GPUs x hours since the run started, to ``until``
        (else its end, else now); local CPU runs cost nothing."""
        if self.started_at is None:
            return Decimal(0)
        hours = ((until or self.completed_at or clock.now()) - self.started_at).total_seconds() / 3600
        gpu = self.gpu_config or {}
        price = settings.GPU_PRICES_PER_HOUR.get(gpu.get("gpu_type") or "", 0.0)
        return Decimal(str(round(price * (gpu.get("gpu_count") or 0) * hours, 2)))

    def cost(self) -> Decimal:
        """What the run has cost: the figure stored in ``cost_usd`` when it ended (a later change of the price
        table does not rewrite it), and the running total before that."""
        if self.is_terminal:
            return Decimal(str(self.cost_usd or 0))
        return self.cost_so_far()

    @property
    def is_remote(self) -> bool:
        return self.runner == self.REMOTE

    @property
    def epoch_count(self) -> int:
        """The epochs the run trains, from its frozen spec (``total_epochs`` is what its reports said)."""
        return int(((self.spec or {}).get("training") or {}).get("epochs") or self.total_epochs or 0)

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
        sources = [s for s, targets in RUN_TRANSITIONS.items() if wanted in targets]
        now = clock.now()
        if wanted == self.RUNNING:
            fields.setdefault("started_at", self.started_at or now)
        if wanted in self.TERMINAL:
            fields.setdefault("completed_at", now)
            fields.setdefault("cost_usd", self.cost_so_far(until=fields["completed_at"]))  # whichever way it ended
        with transaction.atomic():
            movable = TrainingRun.objects.filter(pk=self.pk, status__in=sources)
            if wanted in STAGE_ENDINGS:
                # Read and rewrite the stage table under the row lock: the pipeline's reporter writes it too.
                table = fields.get("stages")
                if table is None:
                    table = movable.select_for_update().values_list("stages", flat=True).first()
                if table is not None:
                    fields["stages"] = end_stages(table, wanted)
            updated = movable.update(status=wanted, updated_at=now, **fields)
            if updated != 1:
                current = TrainingRun.objects.filter(pk=self.pk).values_list("status", flat=True).first()
                raise InvalidTransition(self.pk, current or "deleted", wanted)
        self.refresh_from_db()


# The per-epoch scalars that have a column of their own (every scalar is also in ``metrics``).
EPOCH_METRICS = ("loss", "val_loss", "recall_at_5", "recall_at_10", "recall_at_50", "recall_at_100", "rmse", "mae")


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


class RunNumberCounter(models.Model):
    """The last run number a project gave out, per kind (training runs and experiments count apart).

    A new run takes ``last + 1`` with one UPDATE inside the transaction that
    saves it, so concurrent creators queue on the counter row (its row lock
    on PostgreSQL, the write lock on SQLite) for a moment instead of racing
    for a number. Numbers are not reused, even after their run is deleted.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=RunKind.choices)
    last = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "kind"], name="one_run_counter_per_kind")]

    def __str__(self) -> str:
        return f"{self.project_id}/{self.kind}: {self.last}"

    @classmethod
    def take_next(cls, project, kind: str) -> int:
        """The next run number. Call it inside the transaction that saves the run: a rollback gives it back."""
        if not transaction.get_connection().in_atomic_block:
            raise RuntimeError("take a run number inside the transaction that saves the run")
        # A concurrent first creator may insert the row first: get_or_create then reads theirs.
        cls.objects.get_or_create(project=project, kind=kind)
        # Never at or below a number already taken, so runs inserted without the counter (bulk loads, the
        # admin) are stepped over instead of colliding; the index on (project, kind, run_number) answers it.
        highest = (
            TrainingRun.objects.filter(project=OuterRef("project"), kind=OuterRef("kind"))
            .order_by("-run_number")
            .values("run_number")[:1]
        )
        counter = cls.objects.filter(project=project, kind=kind)
        counter.update(last=Greatest(F("last"), Coalesce(Subquery(highest), 0)) + 1)
        return counter.values_list("last", flat=True).get()


class WebhookDelivery(models.Model):
    """A runner event already applied, by the delivery id its runner gave it (covered by the signature).

    A replayed or retried delivery finds its row and changes nothing. A row
    is needed only while its signed timestamp would still pass the freshness
    check; older rows are pruned (a replay of one of those is refused as stale).
    """

    training_run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="+")
    delivery_id = models.CharField(max_length=64)
    signed_at = models.DateTimeField(help_text="The request's X-Timestamp")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["training_run", "delivery_id"], name="one_delivery_per_id")]
        indexes = [models.Index(fields=["signed_at"], name="delivery_signed_at_idx")]


# What becomes of the stages still pending or running when a run moves to a status.
STAGE_ENDINGS = {
    TrainingRun.FAILED: {StageStatus.PENDING: StageStatus.INTERRUPTED, StageStatus.RUNNING: StageStatus.INTERRUPTED},
    TrainingRun.CANCELLED: {StageStatus.PENDING: StageStatus.CANCELLED, StageStatus.RUNNING: StageStatus.CANCELLED},
    TrainingRun.PENDING: {StageStatus.RUNNING: StageStatus.INTERRUPTED},  # requeued: the rest is still to come
}


def end_stages(stages: dict, wanted: str) -> dict:
    """The stage table of a run moving to ``wanted``: no stage shown running (or waiting) for a run that ended."""
    endings = STAGE_ENDINGS.get(wanted, {})
    return {
        name: ({**stage, "status": endings[stage.get("status")]} if stage.get("status") in endings else stage)
        for name, stage in (stages or {}).items()
    }


def empty_stage_table(selected=STAGES) -> dict:
    """Every stage pending; those the run does not include (an experiment's Pusher) skipped."""
    return {stage: {"status": StageStatus.PENDING if stage in selected else StageStatus.SKIPPED} for stage in STAGES}
