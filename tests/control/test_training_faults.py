"""Faults around a run's pipeline process: killed by a signal, an unwritable pipeline root, a run that ended.

A stand-in child (a sleeping Python process) plays the pipeline where the
test is about the worker's bookkeeping; one test kills a real pipeline.
"""

import errno
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ml_pipeline.spec import STAGES
from ml_platform.training import services
from ml_platform.training.execution import execute
from ml_platform.training.models import TrainingRun
from ml_platform.training.worker import Child, Worker
from tests.helpers import drive, queue_run, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

DONE = ("Compile", "ExampleGen", "StatisticsGen", "SchemaGen", "Transform")


def in_the_trainer(run: TrainingRun, attempts: int = 1) -> TrainingRun:
    """The run as its pipeline leaves it in the middle of the Trainer."""
    stages = {
        **{s: {"status": "completed"} for s in DONE},
        "Trainer": {"status": "running"},
        "Evaluator": {"status": "pending"},
        "Pusher": {"status": "pending"},
    }
    run.transition(TrainingRun.RUNNING, attempts=attempts)
    TrainingRun.objects.filter(pk=run.pk).update(stages=stages, current_stage="Trainer")
    run.refresh_from_db()
    return run


def stand_in_child(run: TrainingRun, folder: Path, megabytes: int = 0, exit_code: int | None = None) -> Child:
    """A process in a session of its own, like the pipeline's, holding ``megabytes`` of memory; once it is ready
    it sleeps, or exits with ``exit_code``."""
    ready = folder / f"ready-{run.pk}"
    then = "time.sleep(120)" if exit_code is None else f"raise SystemExit({exit_code})"
    code = (
        f"import pathlib, time; held = bytearray({megabytes} * 2**20); "
        f"held[::4096] = b'x' * len(held[::4096]); pathlib.Path({str(ready)!r}).touch(); {then}"
    )
    log = open(folder / f"child-{run.pk}.log", "w")  # noqa: SIM115 (the child process writes to it; closed when it is reaped)
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    TrainingRun.objects.filter(pk=run.pk).update(worker_pid=process.pid)
    wait_until(ready.exists)
    return Child(run.pk, process, log)


def stage_statuses(api, run) -> dict:
    answer = api.get(f"/api/training-runs/{run.pk}/")
    assert answer.status_code == 200
    return {stage["name"]: stage["status"] for stage in answer.json()["stages"]}


@pytest.mark.slow
def test_child_killed_by_signal_resumes_from_last_complete_stage(project, olivia, catalog):
    run = queue_run(project, olivia, catalog, epochs=3, batch_size=64)
    worker = Worker()
    run = drive(worker, run, lambda r: r.stages.get("Trainer", {}).get("status") == "running")
    os.kill(run.worker_pid, signal.SIGKILL)  # as the out-of-memory killer does

    run = drive(worker, run, lambda r: r.is_terminal or r.attempts == 2)
    assert run.attempts == 2, (run.status, run.error_message)  # not failed "exited with code -9"
    run = drive(worker, run, lambda r: r.is_terminal)
    assert run.status == TrainingRun.COMPLETED, (run.error_stage, run.error_message)
    assert {run.stages[s]["status"] for s in DONE} == {"cached"}  # resumed, not redone
    assert run.stages["Trainer"]["status"] == "completed"
    assert list(run.metrics_history.values_list("epoch", flat=True)) == [1, 2, 3]


def test_child_killed_too_often_fails_naming_the_signal_and_peak_memory(project, olivia, catalog, settings, tmp_path):
    run = in_the_trainer(queue_run(project, olivia, catalog), attempts=settings.RUN_MAX_ATTEMPTS)
    worker = Worker()
    child = worker.children[run.pk] = stand_in_child(run, tmp_path, megabytes=200)
    worker.reap_children()  # the worker's loop sees the child alive (and reads its memory) before the kill
    os.kill(child.process.pid, signal.SIGKILL)
    wait_until(lambda: not worker.children, step=worker.reap_children)

    run.refresh_from_db()
    assert run.status == TrainingRun.FAILED
    assert run.error_stage == "Trainer"
    assert "killed by signal 9 (SIGKILL: possibly out of memory)" in run.error_message
    peak = re.search(r"peak memory of ([\d,]+) MB", run.error_message)
    assert peak and 200 <= int(peak.group(1).replace(",", "")) < 400, run.error_message


def test_a_run_the_worker_ends_has_its_mlflow_run_closed(project, olivia, catalog, settings, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.MLFLOW_TRACKING_URI)
    experiment = client.get_experiment_by_name("faults") or client.create_experiment("faults")
    tracked = client.create_run(getattr(experiment, "experiment_id", experiment)).info.run_id
    run = in_the_trainer(queue_run(project, olivia, catalog), attempts=settings.RUN_MAX_ATTEMPTS)
    TrainingRun.objects.filter(pk=run.pk).update(mlflow_run_id=tracked)
    worker = Worker()
    child = worker.children[run.pk] = stand_in_child(run, tmp_path)
    os.kill(child.process.pid, signal.SIGKILL)
    wait_until(lambda: not worker.children, step=worker.reap_children)

    assert client.get_run(tracked).info.status == "FAILED"


@pytest.fixture
def unwritable_pipeline_root(tmp_path, settings, monkeypatch) -> Path:
    """PIPELINE_ROOT is a folder the worker may not write in."""
    root = tmp_path / "pipelines"
    root.mkdir(mode=0o555)
    settings.PIPELINE_ROOT = str(root)
    if os.geteuid() == 0:  # root ignores file modes: the kernel's refusal is played here instead
        real_mkdir = os.mkdir

        def refusing_mkdir(path, *args, **kwargs):
            if Path(path).parent == root:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", refusing_mkdir)
    yield root
    root.chmod(0o755)


def test_unwritable_pipeline_root_fails_the_run_at_once_with_the_error(
    project, olivia, catalog, unwritable_pipeline_root
):
    run = queue_run(project, olivia, catalog)
    worker = Worker()
    assert worker.claim_and_start() is not None

    run.refresh_from_db()
    assert run.status == TrainingRun.FAILED  # at once: no process left behind, no wait for "worker lost"
    assert not worker.children
    assert run.error_message == (
        f"cannot write the pipeline root: permission denied at '{run.spec['name']}' (check the PIPELINE_ROOT setting)"
    )
    assert str(unwritable_pipeline_root) not in run.error_message + run.error_traceback
    assert run.error_stage == "Compile"


def test_a_failure_before_the_first_stage_is_recorded_on_the_run(project, olivia, catalog, settings, tmp_path):
    settings.PIPELINE_ROOT = str(tmp_path / "pipelines")
    run = queue_run(project, olivia, catalog)
    run.transition(TrainingRun.RUNNING, attempts=1)
    (services.run_folder(run) / "events.jsonl").mkdir(parents=True)  # the events file cannot be written

    assert execute(run.pk) == TrainingRun.FAILED  # what the pipeline process does, without a process
    run.refresh_from_db()
    assert run.status == TrainingRun.FAILED
    assert run.error_message.startswith(
        f"cannot write the pipeline root: is a directory at "
        f"'{run.spec['name']}/runs/{run.pipeline_run_id}/events.jsonl'"
    )
    assert str(tmp_path) not in run.error_message + run.error_traceback
    assert run.error_stage == "Compile"


def test_stages_of_a_cancelled_run_are_cancelled(project, olivia, catalog, api, tmp_path):
    run = in_the_trainer(queue_run(project, olivia, catalog))
    worker = Worker()
    worker.children[run.pk] = stand_in_child(run, tmp_path)
    assert api.post(f"/api/training-runs/{run.pk}/cancel/").status_code == 200
    assert worker.stop_cancelled() == 1

    assert stage_statuses(api, run) == {
        **{s: "completed" for s in DONE},
        "Trainer": "cancelled",
        "Evaluator": "cancelled",
        "Pusher": "cancelled",
    }


def test_stages_of_a_failed_run_are_interrupted(project, olivia, catalog, api, tmp_path):
    run = in_the_trainer(queue_run(project, olivia, catalog))
    worker = Worker()
    worker.children[run.pk] = stand_in_child(run, tmp_path, exit_code=1)  # a crash, not a kill: not resumed
    wait_until(lambda: not worker.children, step=worker.reap_children)

    assert TrainingRun.objects.get(pk=run.pk).status == TrainingRun.FAILED
    assert stage_statuses(api, run) == {
        **{s: "completed" for s in DONE},
        "Trainer": "interrupted",
        "Evaluator": "interrupted",
        "Pusher": "interrupted",
    }


def test_a_requeued_run_keeps_its_later_stages_pending(project, olivia, catalog, settings):
    settings.RUN_STALE_AFTER_SECONDS = 0
    run = in_the_trainer(queue_run(project, olivia, catalog))
    assert Worker(max_concurrent=0).recover_orphans() == 1

    run.refresh_from_db()
    assert run.status == TrainingRun.PENDING
    assert [run.stages[s]["status"] for s in STAGES[5:]] == ["interrupted", "pending", "pending"]
