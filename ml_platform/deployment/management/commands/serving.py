import json

from django.core.management.base import BaseCommand, CommandError

from ml_platform.deployment import serving_process
from ml_platform.deployment.targets import DeploymentFailed


class Command(BaseCommand):
    help = (
        "Manage the local serving process: start (serves what models.json names), stop, restart, status. "
        "Deploying starts it on its own; use this after a reboot or to stop it."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["start", "stop", "restart", "status"])

    def handle(self, *args, action, **options):
        try:
            if action in ("stop", "restart"):
                with serving_process.serving_lock():
                    stopped = serving_process.stop_server()
                self.stdout.write("stopped the serving process" if stopped else "the serving process was not running")
            if action in ("start", "restart"):
                with serving_process.serving_lock():
                    info = serving_process.ensure_server()
                self.stdout.write(f"serving on {info.url} (pid {info.pid}); log: {serving_process.log_path()}")
        except DeploymentFailed as error:
            raise CommandError(str(error)) from None
        if action == "status":
            self.stdout.write(json.dumps(serving_process.server_status(), indent=2))
