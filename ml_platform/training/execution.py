"""Executing one run's pipeline (in the worker's child process) and recording its outcome."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from django.conf import settings

from ml_pipeline.metrics import final_metrics
from ml_pipeline.reporting import FanOutReporter, JsonLinesReporter
from ml_pipeline.runner import PipelineRunner, RunResult
from ml_pipeline.spec import PipelineSpec, StageStatus
from ml_pipeline.tracking import MlflowReporter
from ml_platform.datasets.access import data_access_for
from ml_platform.training import failures
from ml_platform.training.models import InvalidTransition, TrainingRun
from ml_platform.training.reporter import DatabaseReporter

logger = logging.getLogger(__name__)


def lineage(result: RunResult) -> dict:
    """Each artifact's manifest essentials: type, URI, producing stage, the fingerprints it was made from."""
    return {
        stage: {
            "type": a.type,
            "uri": a.uri,
            "producer": a.stage,
            "run": a.run_id,
            "fingerprint": a.fingerprint,
            "inputs": a.input_fingerprints,
            "summary": a.summary,
        }
        for stage, a in result.artifacts.items()
    }


def previous_version_baseline(run: TrainingRun) -> dict:
    """The evaluator's baseline model: the registered model's latest version, unless the run names its own.

    Chosen when the run starts (not when it is queued), so a version
    registered meanwhile is the one the new run must beat.
    """
    if run.is_experiment or run.registered_model_id is None or run.evaluator_config.get("baseline_model_uri"):
        return {}
    previous = (
        run.registered_model.versions.filter(registry_version__isnull=False)
        .exclude(pk=run.pk)
        .order_by("-registry_version")
        .first()
    )
    path = previous.serving_model_path if previous else None
    if not path or not Path(path).is_dir():
        return {}
    return {"baseline_model_uri": path, "baseline_label": f"{run.name} v{previous.registry_version}"}


def execute(run_id: int) -> str:
    """Run the pipeline for a run the worker has marked running; return the final status.

    What fails outside the stages (the pipeline root cannot be written, MLflow
    cannot be reached, the source is gone before ExampleGen) fails the run
    here and now, with the cause on the run, rather than leaving a process
    that died and a run that looks "running" until its heartbeat goes stale.
    """
    try:
        return _execute(run_id)
    except Exception as error:
        logger.exception("run %s failed outside its stages", run_id)
        run = TrainingRun.objects.get(pk=run_id)
        _close_mlflow_run(run)
        return failures.fail_outside_stages(
            run, failures.outside_stages_message(error, "the pipeline could not run"), traceback.format_exc()
        )


def _close_mlflow_run(run: TrainingRun) -> None:
    if not run.mlflow_run_id:
        return
    try:
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=settings.MLFLOW_TRACKING_URI).set_terminated(run.mlflow_run_id, "FAILED")
    except Exception:  # MLflow may be what failed; the run's own record matters more
        logger.warning("run %s: could not close its MLflow run %s", run.pk, run.mlflow_run_id, exc_info=True)


def _execute(run_id: int) -> str:
    run = TrainingRun.objects.select_related("project", "registered_model").get(pk=run_id)
    baseline = previous_version_baseline(run)
    if baseline and {k: run.spec["evaluator"].get(k) for k in baseline} != baseline:
        run.spec = {**run.spec, "evaluator": {**run.spec["evaluator"], **baseline}}
        TrainingRun.objects.filter(pk=run.pk).update(spec=run.spec)
    # The data policy is today's, not the one of the day the run was queued.
    spec = PipelineSpec.model_validate(run.spec).model_copy(update={"data_access": data_access_for(run.project)})
    runner = PipelineRunner(spec, settings.PIPELINE_ROOT, run_id=run.pipeline_run_id)
    if runner.store.is_local:
        events = runner.store.run_dir(run.pipeline_run_id) / "events.jsonl"
    else:  # an fsspec root (gs://…) cannot be appended to line by line: the event log stays in the data folder
        events = Path(settings.DATA_DIR) / "run-events" / f"{run.pipeline_run_id}.jsonl"
    tracking = MlflowReporter(
        settings.MLFLOW_TRACKING_URI,
        experiment=run.project.unique_name,
        run_name=str(run),
        spec=run.spec,
        tags={
            "ml_platform.run_id": str(run.pk),
            "ml_platform.model_type": run.model_type,
            "ml_platform.kind": run.kind,
        },
        run_id=run.mlflow_run_id or None,
        artifact_root=settings.MLFLOW_ARTIFACT_ROOT,
    )
    TrainingRun.objects.filter(pk=run.pk).update(mlflow_run_id=tracking.run_id)
    runner.reporter = FanOutReporter(DatabaseReporter(run), JsonLinesReporter(events), tracking)
    result = runner.run(from_stage=run.from_stage or None)

    evaluation = result.artifacts.get("Evaluator")
    trainer = result.artifacts.get("Trainer")
    outcome = {
        "artifacts": lineage(result),
        "final_metrics": final_metrics(
            trainer.properties if trainer else {}, evaluation.properties if evaluation else {}
        ),
        "blessed": result.blessed,
        "blessing_reasons": evaluation.properties.get("reasons", []) if evaluation else [],
    }
    status = run.outcome_status(result.status == StageStatus.COMPLETED, result.blessed)
    tracking.finish(status, outcome["final_metrics"], outcome["artifacts"])
    if status == TrainingRun.FAILED and result.error:
        outcome.update(
            error_stage=result.error["stage"],
            error_message=result.error["message"],
            error_traceback=result.error["traceback"],
        )
    run.refresh_from_db()
    try:  # the transition stores what the run cost
        run.transition(status, **outcome)
    except InvalidTransition as refused:  # cancelled meanwhile: keep what was recorded, not the status
        logger.info("run %s finished as %s but is already %s", run.pk, status, refused.current)
        TrainingRun.objects.filter(pk=run.pk).update(**{k: v for k, v in outcome.items() if k.startswith("art")})
        return refused.current
    return status
