import os
import threading
import time

from django.core.management.base import BaseCommand

from ml_platform.training.execution import execute


class Command(BaseCommand):
    help = "Execute one training run's pipeline (the worker starts this in a child process)."

    def add_arguments(self, parser):
        parser.add_argument("run_id", type=int)

    def handle(self, *args, run_id, **options):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        watch_parent()
        status = execute(run_id)
        self.stdout.write(f"run {run_id}: {status}")


def watch_parent(poll_seconds: float = 0.5) -> None:
    """Exit when the worker that started us dies.

    The pipeline runs in a session of its own (so a cancel can kill its whole
    process group), which also means it would outlive a killed worker and race
    the run's recovery. When our parent changes, the worker is gone: stop, and
    let the next worker resume the run from its last complete stage.
    """
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(3)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()
