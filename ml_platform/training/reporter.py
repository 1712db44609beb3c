"""The database reporter: pipeline events become the run's stage table, metrics rows and results.

It runs in the process that executes the pipeline (the worker's child), so
progress is readable through the API as soon as a stage or an epoch ends.
"""

from __future__ import annotations

import logging
import math

from django.db import transaction

from ml_pipeline.reporting import Reporter
from ml_pipeline.spec import StageStatus
from ml_platform.core import clock
from ml_platform.training import resources
from ml_platform.training.models import (
    EPOCH_METRICS,
    STAGE_DONE,
    InvalidStageTransition,
    TrainingMetricsHistory,
    TrainingRun,
    check_stage_move,
)

logger = logging.getLogger(__name__)


def _now_iso() -> str:
    return clock.now().isoformat()


def _finite(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def record_epoch(run: TrainingRun, epoch: int, total_epochs: int, metrics: dict, resource_sample: dict) -> None:
    """Upsert the epoch's row (a repeated report replaces it) and the run's progress."""
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    with transaction.atomic():
        TrainingMetricsHistory.objects.update_or_create(
            training_run=run,
            epoch=epoch,
            defaults={
                **{name: _finite(scalars.get(name)) for name in EPOCH_METRICS},
                "metrics": scalars,
                "histograms": metrics.get("histograms", {}),
                "resources": resource_sample,
            },
        )
        current = TrainingRun.objects.select_for_update().get(pk=run.pk)
        resources_now = {**resource_sample, "cost_so_far_usd": float(current.cost_so_far())}
        TrainingRun.objects.filter(pk=run.pk).update(
            current_epoch=max(epoch, current.current_epoch or 0),
            total_epochs=total_epochs,
            resources=resources_now,
        )


class DatabaseReporter(Reporter):
    """Writes events to the run's rows.

    ``sample_resources``: measure this process's CPU/memory/GPUs at each epoch
    (the local worker's child); webhooks pass False and use what the remote
    runner measured (``metrics["resources"]``).

    A stage move the stage table does not allow (``STAGE_TRANSITIONS``) is
    not written: ``strict`` (webhooks) raises InvalidStageTransition so the
    runner hears it; otherwise (the local pipeline, which must not fail for
    its own reporting) it is logged.
    """

    def __init__(self, run: TrainingRun, sample_resources: bool = True, strict: bool = False) -> None:
        self.run = run
        self.sample_resources = sample_resources
        self.strict = strict

    def _update_stage(self, stage: str, reused: bool = False, **fields) -> None:
        with transaction.atomic():
            run = TrainingRun.objects.select_for_update().get(pk=self.run.pk)
            stages = dict(run.stages)
            current = stages.get(stage, {}).get("status", StageStatus.PENDING)
            if reused and current in STAGE_DONE:
                return  # a resumed run announcing a stage it reuses: nothing starts again
            try:
                check_stage_move(stage, current, fields["status"])
            except InvalidStageTransition as refused:
                if self.strict:
                    raise
                logger.warning("run %s: %s; the event is ignored", run.pk, refused)
                return
            stages[stage] = {**stages.get(stage, {}), **fields}
            extra = {"current_stage": stage} if fields.get("status") == StageStatus.RUNNING else {}
            TrainingRun.objects.filter(pk=run.pk).update(stages=stages, **extra)

    def stage_started(self, stage, info):
        self._update_stage(
            stage,
            reused=bool((info or {}).get("cached")),
            status=StageStatus.RUNNING,
            started_at=_now_iso(),
            ended_at=None,
        )

    def stage_completed(self, stage, summary, properties, cached):
        self._update_stage(
            stage, status=StageStatus.CACHED if cached else StageStatus.COMPLETED, summary=summary, ended_at=_now_iso()
        )

    def stage_failed(self, stage, message, traceback):
        self._update_stage(stage, status=StageStatus.FAILED, summary=message, ended_at=_now_iso())
        TrainingRun.objects.filter(pk=self.run.pk).update(
            error_stage=stage, error_message=message, error_traceback=traceback
        )

    def stage_skipped(self, stage, reason):
        self._update_stage(stage, status=StageStatus.SKIPPED, summary=reason, ended_at=_now_iso())

    def epoch_completed(self, epoch, total_epochs, metrics):
        measured = resources.sample() if self.sample_resources else metrics.get("resources", {})
        record_epoch(self.run, epoch, total_epochs, metrics, measured)
