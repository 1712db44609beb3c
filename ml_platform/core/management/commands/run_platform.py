"""Run the web server and the background worker together, and say where to open the platform."""

import os
import signal
import subprocess
import sys
import time
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ml_platform.core.demo import DEMO_USERNAME, demo_password


class Command(BaseCommand):
    help = "Start gunicorn (web) and the task worker; stop both on Ctrl-C or when either exits."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("ML_PLATFORM_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("ML_PLATFORM_PORT", "8000")))
        parser.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))

    def handle(self, *args, host, port, web_workers, **options):
        manage = str(settings.BASE_DIR / "manage.py")
        children = {
            "web": subprocess.Popen([
                sys.executable, "-m", "gunicorn", "ml_platform.wsgi:application",
                "--bind", f"{host}:{port}", "--workers", str(web_workers), "--threads", "4",
                "--access-logfile", "-", "--log-level", "warning",
                # A deploy waits for the serving process to load the model.
                "--timeout", str(int(settings.SERVING_LOAD_TIMEOUT) + 30),
            ]),
            "worker": subprocess.Popen([sys.executable, manage, "run_worker"]),
        }
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            url = f"http://{host}:{port}/"
            self._wait_until_up(url + "healthz", children)
            self.stdout.write(self.style.SUCCESS(f"ML Platform is running at {url}"), ending="\n")
            password, _ = demo_password()
            self.stdout.write(f"Log in as '{DEMO_USERNAME}' with password '{password}'  (Ctrl-C stops it)")
            self.stdout.flush()
            while not stopping:
                for name, child in children.items():
                    if child.poll() is not None:
                        raise CommandError(f"the {name} process exited with status {child.returncode}")
                time.sleep(0.5)
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.terminate()
            for child in children.values():
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()

    def _wait_until_up(self, health_url: str, children: dict, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if children["web"].poll() is not None:
                raise CommandError("the web server failed to start (see its output above)")
            try:
                with urllib.request.urlopen(health_url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise CommandError(f"the web server did not answer {health_url} within {timeout:.0f} s")
