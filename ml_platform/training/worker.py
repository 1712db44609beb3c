"""The worker: takes queued runs, executes each in a child process it can stop, and keeps runs honest.

Each :meth:`Worker.step` does a little of everything (the embedded scheduler's tick too) and is what tests call;
``manage.py run_worker`` just loops over it. Runs are claimed with a guarded
UPDATE (pending -> running), so several workers never take the same run.
While a child runs, the worker writes the run's heartbeat; a run whose
heartbeat goes stale (its worker died) is put back in the queue to resume
from its last complete stage, or failed with "worker lost" after
RUN_MAX_ATTEMPTS, so no run stays "running" forever. A child killed by a
signal (the kernel's out-of-memory killer, an operator) is treated the same
way; a run whose child cannot even be started fails at once, with the cause.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Q

from ml_pipeline import tracking
from ml_platform.core import clock
from ml_platform.deployment import jobs
from ml_platform.schedules import actions, backends, scheduler
from ml_platform.training import failures, run_folders
from ml_platform.training.artifact_files import StoredFile
from ml_platform.training.models import InvalidTransition, TrainingRun

logger = logging.getLogger(__name__)

LOG_PUBLISH_SECONDS = 10.0  # how often a running child's worker log is copied to a non-local store


@dataclass
class Child:
    run_id: int
    process: subprocess.Popen
    log_file: object
    log_path: Path | None = None  # with a non-local root, a local spool copied to ``log_store``
    log_store: StoredFile | None = None
    log_published_at: float = 0.0
    peak_rss_bytes: int = 0  # the kernel's high-water mark of the child's resident memory, as last read

    def poll(self) -> int | None:
        """The exit code once the child has ended (negative: the signal that killed it), else None.

        Each poll first reads the child's peak resident memory (VmHWM): the
        kernel keeps that high-water mark itself, so a kill by the
        out-of-memory killer right after a poll still shows (nearly) its
        peak. wait4's ru_maxrss would not do: it also counts the worker's own
        memory, which the child shared between fork and exec.
        """
        if self.process.returncode is not None:
            return self.process.returncode
        self.peak_rss_bytes = max(self.peak_rss_bytes, _peak_rss_bytes(self.process.pid))
        return self.process.poll()

    def publish_log(self, *, every: float = 0.0) -> None:
        """Copy the worker log's spool to the store, at most once per ``every`` seconds."""
        if self.log_store is None or time.monotonic() - self.log_published_at < every:
            return
        self.log_published_at = time.monotonic()
        try:
            run_folders.publish_worker_log(self.log_path, self.log_store)
        except OSError:  # the store unreachable for a moment: the next copy carries it all
            logger.warning("run %s: could not copy its worker log to the store", self.run_id, exc_info=True)

    def close_log(self) -> None:
        self.log_file.close()
        if self.log_store is not None:
            try:
                run_folders.publish_worker_log(self.log_path, self.log_store, last=True)
            except OSError:
                logger.warning("run %s: could not copy its worker log to the store", self.run_id, exc_info=True)


def _peak_rss_bytes(pid: int) -> int:
    """VmHWM of a live process, 0 where /proc does not say (not Linux, or already gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Worker:
    def __init__(self, worker_id: str | None = None, max_concurrent: int | None = None) -> None:
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.max_concurrent = max_concurrent or settings.MAX_CONCURRENT_RUNS
        self.children: dict[int, Child] = {}
        self.action: tuple[int, subprocess.Popen] | None = None  # (firing id, its child) acting on a blessed run
        self.deployments = jobs.Carrier(self.worker_id)  # deploys, rollbacks, undeploys the web server recorded
        self.stopping = False

    # -- one iteration ---------------------------------------------------------
    def step(self) -> bool:
        """Do one round of work; True when something happened."""
        did = self.recover_orphans() > 0
        did |= self.follow_remote() > 0
        did |= self.reap_children() > 0
        did |= self.stop_cancelled() > 0
        self.heartbeat()
        if not self.stopping:
            did |= self.fire_schedules() > 0
            did |= self.act_on_blessed() > 0
            did |= self.deployments.step() > 0
            did |= self.claim_and_start() is not None
        return did

    def act_on_blessed(self) -> int:
        """Start a scheduled blessed run's push (and deploy) in a child process, one at a time, so a slow
        push never holds up the tick (ml_platform.schedules.actions). The child has a session of
        its own: a worker that stops leaves it to finish; one that dies leaves the action to go stale."""
        if self.action is not None:
            firing_id, process = self.action
            if process.poll() is None:
                return 0
            self.action = None
            actions.release_blessed_action(firing_id, f"its process ended with code {process.returncode}")
        firing = actions.claim_blessed_action(clock.now())
        if firing is None:
            return 0
        command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "act_on_blessed", str(firing.pk)]
        try:
            self.action = (firing.pk, subprocess.Popen(command, start_new_session=True))
        except OSError as error:
            logger.exception("firing %s: its blessed run's action could not be started", firing.pk)
            actions.release_blessed_action(firing.pk, f"its process could not be started: {error}")
        return 1

    def fire_schedules(self) -> int:
        """The embedded scheduler's tick (ml_platform.schedules.scheduler): due schedules become queued runs,
        ended ones update their schedule. Another scheduler backend fires them itself."""
        return scheduler.tick(self.worker_id) if backends.embedded() else 0

    def follow_remote(self) -> int:
        """Remote runs (Kubeflow, Vertex AI): submit the queued, read the state of the running (their jobs may
        end without their webhooks arriving), send cancels (ml_platform.runners.services)."""
        from ml_platform.runners import services as remote

        return remote.step()

    def recover_orphans(self) -> int:
        """Runs marked running whose heartbeat is stale and that no child of ours executes."""
        stale_before = clock.now() - timedelta(seconds=settings.RUN_STALE_AFTER_SECONDS)
        # Remote runs have no local heartbeat: their events are their liveness (see TrainingRun.runner).
        orphans = (
            TrainingRun.objects.filter(status=TrainingRun.RUNNING, runner=TrainingRun.LOCAL)
            .filter(Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True))
            .exclude(pk__in=list(self.children))
        )
        recovered = 0
        for run in orphans:
            try:  # the transition marks the stage that was running "interrupted"
                if run.attempts < settings.RUN_MAX_ATTEMPTS and not run.cancel_requested:
                    run.transition(TrainingRun.PENDING, worker_id="", worker_pid=None)
                    logger.warning("run %s lost its worker; queued to resume (attempt %s)", run.pk, run.attempts + 1)
                else:
                    run.transition(
                        TrainingRun.FAILED,
                        error_stage=run.current_stage,
                        error_message=f"worker lost: no heartbeat since {run.heartbeat_at}",
                    )
                    logger.warning("run %s lost its worker; failed after %s attempts", run.pk, run.attempts)
                recovered += 1
            except InvalidTransition:
                continue  # another worker got there first
            close_tracking(run.pk)
        return recovered

    def claim_and_start(self) -> TrainingRun | None:
        if len(self.children) >= self.max_concurrent:
            return None
        queued = TrainingRun.objects.filter(status=TrainingRun.PENDING, runner=TrainingRun.LOCAL)  # never a remote run
        for run in queued.order_by("created_at", "id")[:5]:
            try:
                run.transition(
                    TrainingRun.RUNNING,
                    worker_id=self.worker_id,
                    heartbeat_at=clock.now(),
                    attempts=run.attempts + 1,
                    cancel_requested=False,
                )
            except InvalidTransition:
                continue
            try:
                self._start(run)
            except Exception as error:  # e.g. an unwritable pipeline root: say so on the run, now
                logger.exception("run %s could not be started", run.pk)
                failures.fail_outside_stages(
                    run,
                    failures.outside_stages_message(error, "the pipeline process could not be started"),
                    traceback.format_exc(),
                )
            return run
        return None

    def _start(self, run: TrainingRun) -> None:
        log_path, log_store = run_folders.worker_log_spool(run)
        log_file = open(log_path, "a")  # noqa: SIM115 (the child process writes to it; closed when it is reaped)
        command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "execute_training_run", str(run.pk)]
        try:
            # A session of its own, so cancelling kills the pipeline and everything it started.
            process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
        except BaseException:
            log_file.close()
            raise
        TrainingRun.objects.filter(pk=run.pk).update(worker_pid=process.pid)
        self.children[run.pk] = Child(run.pk, process, log_file, log_path, log_store)
        logger.info("run %s started in process %s", run.pk, process.pid)

    def heartbeat(self) -> None:
        for child in self.children.values():
            child.publish_log(every=LOG_PUBLISH_SECONDS)
        if self.children:
            TrainingRun.objects.filter(pk__in=list(self.children), status=TrainingRun.RUNNING).update(
                heartbeat_at=clock.now()
            )

    def stop_cancelled(self) -> int:
        wanted = TrainingRun.objects.filter(pk__in=list(self.children), cancel_requested=True)
        stopped = 0
        for run in wanted:
            self._kill(self.children.pop(run.pk))
            with contextlib.suppress(InvalidTransition):  # it finished just before the cancel landed
                run.transition(TrainingRun.CANCELLED, error_message="cancelled by a user")
            close_tracking(run.pk)
            stopped += 1
        return stopped

    def reap_children(self) -> int:
        finished = [(child, code) for child in list(self.children.values()) if (code := child.poll()) is not None]
        for child, code in finished:
            del self.children[child.run_id]
            child.close_log()
            run = TrainingRun.objects.get(pk=child.run_id)
            if run.status != TrainingRun.RUNNING:
                continue  # it recorded its outcome
            try:  # the child died before recording an outcome
                if code < 0:
                    self._killed(run, child, -code)
                else:
                    run.transition(
                        TrainingRun.FAILED,
                        error_stage=run.current_stage,
                        error_message=f"the pipeline process exited with code {code} "
                        f"(see worker.log in the run folder)",
                    )
            except InvalidTransition:
                pass
            close_tracking(run.pk)
        return len(finished)

    def _killed(self, run: TrainingRun, child: Child, signum: int) -> None:
        """A child killed by a signal is a lost worker: resumed from its last complete stage while attempts last."""
        _kill_group(child.process.pid, signal.SIGKILL)  # whatever it started dies with it
        peak_mb = child.peak_rss_bytes / 2**20
        if run.cancel_requested:
            run.transition(TrainingRun.CANCELLED, error_message="cancelled by a user")
        elif run.attempts < settings.RUN_MAX_ATTEMPTS:
            run.transition(TrainingRun.PENDING, worker_id="", worker_pid=None)
            logger.warning(
                "run %s: its pipeline process was killed by %s at a peak memory of %.0f MB; "
                "queued to resume (attempt %s)",
                run.pk,
                failures.signal_name(signum),
                peak_mb,
                run.attempts + 1,
            )
        else:
            run.transition(
                TrainingRun.FAILED,
                error_stage=run.current_stage,
                error_message=failures.killed_message(signum, child.peak_rss_bytes, run.attempts),
            )
            logger.warning(
                "run %s: its pipeline process was killed by %s at a peak memory of %.0f MB; failed after %s attempts",
                run.pk,
                failures.signal_name(signum),
                peak_mb,
                run.attempts,
            )

    # -- lifecycle -------------------------------------------------------------
    def _kill(self, child: Child, grace: float = 5.0) -> None:
        try:
            os.killpg(child.process.pid, signal.SIGTERM)
            child.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
        except ProcessLookupError:
            pass
        child.close_log()

    def shutdown(self) -> None:
        """Stop children and queue their runs again, so the next worker resumes them (and its deployment's
        request, which the next worker carries out)."""
        self.deployments.stop()
        for child in list(self.children.values()):
            self._kill(child)
            run = TrainingRun.objects.get(pk=child.run_id)
            with contextlib.suppress(InvalidTransition):
                run.transition(TrainingRun.PENDING, worker_id="", worker_pid=None)
        self.children.clear()

    def run_forever(self, poll_seconds: float = 1.0) -> None:
        def stop(*_):
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        logger.info("worker %s started (up to %s concurrent runs)", self.worker_id, self.max_concurrent)
        try:
            while not self.stopping:
                close_old_connections()
                try:
                    did = self.step()
                except Exception:  # one bad run must not kill the worker; it is logged and retried
                    logger.exception("worker step failed")
                    did = False
                time.sleep(0.1 if did else poll_seconds)
        finally:
            self.shutdown()


def close_tracking(run_id: int) -> None:
    """Close the MLflow run of a run the worker ended (cancelled, killed, lost): its pipeline never could.

    Only an ended run is closed (a requeued one keeps logging into the same MLflow run when it resumes),
    and MLflow being unreachable never stops the worker.
    """
    run = TrainingRun.objects.filter(pk=run_id).only("status", "mlflow_run_id").first()
    if run is None or not run.is_terminal or not run.mlflow_run_id:
        return
    status = "KILLED" if run.status == TrainingRun.CANCELLED else "FAILED"
    try:
        tracking.end_if_running(settings.MLFLOW_TRACKING_URI, run.mlflow_run_id, status)
    except Exception:  # noqa: BLE001 (tracking is a record of the run, not a condition of ending it)
        logger.warning("run %s: could not close its MLflow run %s", run_id, run.mlflow_run_id, exc_info=True)


def _kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
