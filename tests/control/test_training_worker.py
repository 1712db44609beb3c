"""The worker executes queued runs in child processes: progress, cancel, crash recovery, transitions.

These tests run real pipelines on small generated data, so they use a
database file the worker's children can open (see tests/settings.py).
"""

import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from ml_pipeline.spec import STAGES
from ml_platform.training import services
from ml_platform.training.models import InvalidTransition, TrainingMetricsHistory, TrainingRun
from ml_platform.training.worker import Worker
from tests.helpers import drive, pid_alive, queue_run, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_it_executes_a_run_through_all_eight_stages(project, olivia, catalog):
    run = queue_run(project, olivia, catalog)
    seen_stages = []

    def finished(r):
        if r.current_stage and (not seen_stages or seen_stages[-1] != r.current_stage):
            seen_stages.append(r.current_stage)
        return r.is_terminal

    run = drive(Worker(), run, finished)
    assert run.status == TrainingRun.COMPLETED, (run.error_stage, run.error_message)
    assert [run.stages[s]["status"] for s in STAGES] == ["completed"] * 8
    assert seen_stages == sorted(seen_stages, key=STAGES.index)  # never backwards
    assert list(run.metrics_history.values_list("epoch", flat=True)) == [1, 2]
    assert run.metrics_history.get(epoch=2).recall_at_100 is not None
    assert run.metrics_history.get(epoch=2).resources["rss_mb"] > 0
    assert run.blessed is True and run.blessing_reasons
    assert run.final_metrics["recall_at_100"] > 0
    assert set(run.artifacts) == set(STAGES)
    assert run.artifacts["Trainer"]["inputs"].keys() == {"ExampleGen", "Transform"}
    assert run.cost_usd == 0 and run.duration_seconds > 0

    # Tracked in MLflow too: params, per-epoch and final metrics, key artifacts, lineage.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.MLFLOW_TRACKING_URI)
    tracked = client.get_run(run.mlflow_run_id)
    assert tracked.info.status == "FINISHED"
    assert tracked.data.params["training.epochs"] == "2"
    assert [m.step for m in client.get_metric_history(run.mlflow_run_id, "loss")] == [1, 2]
    assert tracked.data.metrics["final.recall_at_100"] == pytest.approx(run.final_metrics["recall_at_100"])
    logged = {a.path for a in client.list_artifacts(run.mlflow_run_id, "Evaluator")}
    assert logged == {"Evaluator/evaluation.json", "Evaluator/blessing.json"}


def test_cancel_stops_the_child_within_seconds_and_marks_nothing_complete(project, olivia, catalog):
    run = queue_run(project, olivia, catalog, epochs=200, batch_size=32)
    worker = Worker()
    run = drive(worker, run, lambda r: r.stages.get("Trainer", {}).get("status") == "running")
    pid = run.worker_pid
    services.request_cancel(run)
    run = drive(worker, run, lambda r: r.is_terminal, timeout=10)  # within seconds
    assert run.status == TrainingRun.CANCELLED
    assert not pid_alive(pid)
    trainer_dir = services.run_folder(run) / "Trainer"
    assert not (trainer_dir / "manifest.json").exists()


def test_a_killed_worker_never_leaves_a_run_running(project, olivia, catalog):
    run = queue_run(project, olivia, catalog, epochs=5, batch_size=64)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    worker_process = subprocess.Popen(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "run_worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: TrainingMetricsHistory.objects.filter(training_run=run).count() >= 2,
            timeout=180,
            message="the worker never reached epoch 2",
        )
    finally:
        worker_process.send_signal(signal.SIGKILL)
        worker_process.wait()
    run.refresh_from_db()
    assert run.status == TrainingRun.RUNNING
    # the pipeline notices its worker is gone and stops
    wait_until(lambda: not pid_alive(run.worker_pid), timeout=10, message="the pipeline outlived its worker")
    # Its last heartbeat, as old as a dead worker's gets: the next worker takes the run over.
    stale = timezone.now() - timedelta(seconds=settings.RUN_STALE_AFTER_SECONDS + 1)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=stale)

    run = drive(Worker(), run, lambda r: r.is_terminal)
    assert run.status == TrainingRun.COMPLETED, (run.error_stage, run.error_message)
    assert run.attempts == 2
    assert run.stages["ExampleGen"]["status"] == "cached"  # resumed from the last complete stage
    assert run.final_metrics["epochs_run"] == 5
    assert list(run.metrics_history.values_list("epoch", flat=True)) == [1, 2, 3, 4, 5]


def test_a_run_that_keeps_losing_its_worker_fails_with_worker_lost(project, olivia, small_catalog, settings):
    settings.RUN_STALE_AFTER_SECONDS = 0
    run = queue_run(project, olivia, small_catalog)
    run.transition(TrainingRun.RUNNING, attempts=settings.RUN_MAX_ATTEMPTS)
    assert Worker(max_concurrent=0).recover_orphans() == 1
    run.refresh_from_db()
    assert run.status == TrainingRun.FAILED
    assert run.error_message.startswith("worker lost")


def test_only_valid_transitions_happen(project, olivia, small_catalog):
    run = queue_run(project, olivia, small_catalog)
    with pytest.raises(InvalidTransition):
        run.transition(TrainingRun.COMPLETED)  # pending cannot complete
    run.transition(TrainingRun.CANCELLED)
    for wanted in (TrainingRun.RUNNING, TrainingRun.PENDING, TrainingRun.FAILED):
        with pytest.raises(InvalidTransition):
            run.transition(wanted)  # terminal is terminal
    assert TrainingRun.objects.get(pk=run.pk).status == TrainingRun.CANCELLED


def test_the_concurrency_limit_holds(project, olivia, catalog):
    first, second = queue_run(project, olivia, catalog), queue_run(project, olivia, catalog)
    worker = Worker(max_concurrent=1)
    worker.claim_and_start()
    assert worker.claim_and_start() is None
    statuses = dict(TrainingRun.objects.filter(pk__in=[first.pk, second.pk]).values_list("pk", "status"))
    assert statuses == {first.pk: TrainingRun.RUNNING, second.pk: TrainingRun.PENDING}
    worker.shutdown()
    assert TrainingRun.objects.get(pk=first.pk).status == TrainingRun.PENDING  # requeued, resumable
