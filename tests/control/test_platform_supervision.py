"""run_platform supervises its processes: a killed one comes back, the rest stay up, SIGTERM stops them all.

The platform runs as a real process tree on a free port, on this test
process's database (so a run queued here is the one its worker executes).
"""

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest
from django.conf import settings as django_settings

from ml_platform.core.supervisor import Program, Supervisor
from ml_platform.deployment import serving_process
from ml_platform.training.models import TrainingMetricsHistory, TrainingRun
from tests.helpers import free_port, queue_run, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "healthz", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def worker_pid(platform: subprocess.Popen) -> int | None:
    for process in psutil.Process(platform.pid).children():
        try:
            if "run_worker" in process.cmdline() and process.status() != psutil.STATUS_ZOMBIE:
                return process.pid
        except psutil.Error:
            continue
    return None


@pytest.fixture
def start_platform(tmp_path):
    """Starts `manage.py run_platform` with extra environment; returns (process, url); stops it afterwards."""
    started = []

    def start(**env) -> tuple[subprocess.Popen, str]:
        port = free_port()
        log = open(tmp_path / f"platform-{port}.log", "w")  # noqa: SIM115 (the child process writes to it; closed when it is reaped)
        process = subprocess.Popen(
            [
                sys.executable,
                str(django_settings.BASE_DIR / "manage.py"),
                "run_platform",
                "--port",
                str(port),
                "--web-workers",
                "1",
            ],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(process)
        url = f"http://127.0.0.1:{port}/"
        wait_until(
            lambda: healthy(url) or process.poll() is not None, timeout=120, message="the platform never answered"
        )
        assert process.poll() is None, (tmp_path / f"platform-{port}.log").read_text()[-3000:]
        return process, url

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.mark.slow
def test_killed_worker_is_restarted_and_web_stays_up(project, olivia, catalog, start_platform):
    run = queue_run(project, olivia, catalog, epochs=4, batch_size=64)
    platform, url = start_platform(RUN_STALE_AFTER_SECONDS="2")
    wait_until(
        lambda: TrainingMetricsHistory.objects.filter(training_run=run).exists(),
        timeout=180,
        message="the run never reached its first epoch",
    )
    first_worker = worker_pid(platform)
    os.kill(first_worker, signal.SIGKILL)

    def web_answers():
        assert healthy(url), "the web server went down with the worker"

    wait_until(
        lambda: worker_pid(platform) not in (None, first_worker), timeout=120, step=web_answers, message="no new worker"
    )
    run = wait_until(
        lambda: (r := TrainingRun.objects.get(pk=run.pk)).is_terminal and r,
        timeout=180,
        step=web_answers,
        message="the run was not resumed",
    )
    assert run.status == TrainingRun.COMPLETED, (run.error_stage, run.error_message)
    assert run.attempts == 2
    assert list(run.metrics_history.values_list("epoch", flat=True)) == [1, 2, 3, 4]
    assert platform.poll() is None


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_stopping_the_platform_stops_the_serving_process(start_platform, tmp_path, settings, how):
    settings.SERVING_DIR, settings.SERVING_PORT = str(tmp_path / "serving"), free_port()
    serving = serving_process.start_server()  # as a deploy carried out by the worker does
    platform, url = start_platform(SERVING_DIR=settings.SERVING_DIR, SERVING_PORT=str(settings.SERVING_PORT))
    children = psutil.Process(platform.pid).children(recursive=True)

    if how == "SIGTERM":
        platform.send_signal(signal.SIGTERM)
    else:  # a terminal's Ctrl-C: SIGINT to the whole foreground process group
        os.killpg(platform.pid, signal.SIGINT)
    assert platform.wait(timeout=60) == 0
    assert not serving_process.process_alive(serving.pid)
    assert not Path(serving_process.pid_path()).exists()
    assert not healthy(url)
    left = [c.cmdline() for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not left


@pytest.mark.slow
def test_the_next_start_brings_the_deployed_models_back(start_platform, tmp_path, settings):
    settings.SERVING_DIR, settings.SERVING_PORT = str(tmp_path / "serving"), free_port()
    serving_process.write_models_config({"models": {"p1-shop.recs": {"path": str(tmp_path / "model"), "version": 2}}})
    platform, url = start_platform(SERVING_DIR=settings.SERVING_DIR, SERVING_PORT=str(settings.SERVING_PORT))

    def serving_again():
        health = serving_process.healthz("127.0.0.1", settings.SERVING_PORT)
        return health is not None and "p1-shop.recs" in health.get("models", {})

    wait_until(serving_again, timeout=120, message="the deployed model was not served again after the start")
    info = serving_process.read_pidfile()
    platform.send_signal(signal.SIGTERM)
    assert platform.wait(timeout=60) == 0
    assert not serving_process.process_alive(info.pid)


class FakeProcess:
    pids = iter(range(1000, 2000))

    def __init__(self, *args, **kwargs):
        self.pid, self.returncode = next(self.pids), None

    def poll(self):
        return self.returncode


def test_a_process_that_keeps_dying_is_restarted_with_doubling_delays():
    now = [0.0]
    supervisor = Supervisor([Program("worker", ["run_worker"])], clock=lambda: now[0], popen=FakeProcess)
    supervisor.start_all()
    delays = []
    for _ in range(7):
        supervisor["worker"].process.returncode = -signal.SIGKILL
        supervisor.check()
        died, pid = now[0], supervisor["worker"].process.pid
        while supervisor["worker"].process.pid == pid:
            now[0] += 0.5
            supervisor.check()
        delays.append(now[0] - died)
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert supervisor["worker"].restarts == 7


def test_the_back_off_starts_over_once_a_process_stayed_up():
    now = [0.0]
    supervisor = Supervisor([Program("web", ["gunicorn"])], clock=lambda: now[0], popen=FakeProcess, stable_after=60)
    supervisor.start_all()
    for _ in range(3):  # quick deaths: the delay grows to 4 s
        supervisor["web"].process.returncode = 1
        supervisor.check()
        now[0] += supervisor["web"].delay
        supervisor.check()
    now[0] += 61
    supervisor["web"].process.returncode = 1
    supervisor.check()
    assert supervisor["web"].delay == 1
