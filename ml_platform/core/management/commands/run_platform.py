"""Run the web server and the background worker together, and say where to open the platform.

Both are supervised (ml_platform/core/supervisor.py): one that dies is logged
and started again with back-off, while the other keeps going; Ctrl-C or
SIGTERM stops both and the local serving process too.
"""

import logging
import os
import signal
import sys
import threading
import time
import urllib.request

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from ml_platform.core.demo import DEMO_USERNAME, demo_password
from ml_platform.core.supervisor import Program, Supervisor, describe_exit

logger = logging.getLogger(__name__)


WEB_THREADS = 4
WEB_TIMEOUT = 120  # seconds a request may take (a preview of a large source)


def gunicorn_command(bind: str, workers: int, threads: int = WEB_THREADS) -> list[str]:
    """The web server's command line (the benchmark starts the same one)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "ml_platform.wsgi:application",
        "--bind",
        bind,
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--access-logfile",
        "-",
        "--log-level",
        "warning",
        # No request waits for a model to load (the worker carries deploys out), so the usual bound will do.
        "--timeout",
        str(WEB_TIMEOUT),
    ]


class Command(BaseCommand):
    help = (
        "Start gunicorn (web) and the task worker, restart either when it dies, "
        "and stop both (and the serving process) on Ctrl-C or SIGTERM."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("ML_PLATFORM_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("ML_PLATFORM_PORT", "8000")))
        parser.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))

    def handle(self, *args, host, port, web_workers, **options):
        # Pages name static files by their hashed names from collectstatic's manifest: collect on every start,
        # so a restart after an upgrade never serves pages that name files the manifest does not know.
        call_command("collectstatic", interactive=False, verbosity=0)
        manage = str(settings.BASE_DIR / "manage.py")
        supervisor = Supervisor(
            [
                Program("web", gunicorn_command(f"{host}:{port}", web_workers)),
                Program("worker", [sys.executable, manage, "run_worker"]),
            ]
        )
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        supervisor.start_all()
        try:
            url = f"http://{host}:{port}/"
            if self._wait_until_up(url + "healthz", supervisor["web"].process, lambda: stopping):
                self.stdout.write(self.style.SUCCESS(f"ML Platform is running at {url}"), ending="\n")
                password, _ = demo_password()
                self.stdout.write(f"Log in as '{DEMO_USERNAME}' with password '{password}'  (Ctrl-C stops it)")
                self.stdout.flush()
                # Loading models takes a while; supervision goes on meanwhile.
                threading.Thread(target=resume_serving, daemon=True, name="resume-serving").start()
            while not stopping:
                supervisor.check()
                time.sleep(0.5)
            logger.info("stopping the platform")
        finally:
            supervisor.stop_all()
            stop_serving()

    def _wait_until_up(self, health_url: str, web, stopping=lambda: False, timeout: float = 60) -> bool:
        """True once the web server answers; False when the platform is being stopped meanwhile (Ctrl-C also
        stops the web server, which is then no failure)."""
        # A web server that dies before it ever answered is misconfigured (the port is taken): say so, no restarts.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stopping():
                return False
            if web.poll() is not None:
                if stopping():
                    return False
                raise CommandError(
                    f"the web server {describe_exit(web.returncode)} before it answered (see its output above)"
                )
            try:
                with urllib.request.urlopen(health_url, timeout=2) as response:
                    if response.status == 200:
                        return True
            except OSError:
                time.sleep(0.3)
        raise CommandError(f"the web server did not answer {health_url} within {timeout:.0f} s")


def resume_serving() -> None:
    """Serve again what was deployed when the platform was last stopped (the serving process stops with it)."""
    from ml_platform.deployment import serving_process
    from ml_platform.deployment.targets import DeploymentFailed

    try:
        if not serving_process.read_models_config()["models"]:
            return
        with serving_process.serving_lock():
            info = serving_process.ensure_server()
        logger.info("serving the deployed models on %s (pid %s)", info.url, info.pid)
    except DeploymentFailed as error:
        logger.error("the deployed models are not served: %s", error)


def stop_serving() -> None:
    from ml_platform.deployment import serving_process

    try:
        with serving_process.serving_lock(timeout=30):
            serving_process.stop_server()
    except Exception:  # stopping must not be stopped by this; the pid file still names it for next time
        logger.exception("could not stop the serving process")
