"""What a rerun would reuse: the runner's own plan (``PipelineRunner.plan``, as ``python -m ml_pipeline plan``
prints it) for the run's spec recomputed from a stage, read from the pipeline folder's cache."""

from __future__ import annotations

from django.conf import settings

from ml_pipeline.runner import PipelineRunner
from ml_platform.training.models import TrainingRun
from ml_platform.training.services import prepare_spec


def rerun_plan(run: TrainingRun, from_stage: str | None) -> list[dict]:
    """Each stage of a rerun of ``run`` as it was, from ``from_stage`` on: reuse (from the cache) or run, and
    why. A rerun that also edits the training parameters changes only the Trainer and what follows it."""
    spec = prepare_spec(run)
    steps = PipelineRunner(spec, settings.PIPELINE_ROOT, run_id="plan").plan(from_stage or None)
    return [{"stage": step.stage, "action": step.action, "reason": step.reason} for step in steps]
