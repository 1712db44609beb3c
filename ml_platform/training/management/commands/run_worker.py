from django.core.management.base import BaseCommand

from ml_platform.training.worker import Worker


class Command(BaseCommand):
    help = "Execute queued training runs, each in a child process (Ctrl-C stops and requeues them)."

    def add_arguments(self, parser):
        parser.add_argument("--max-concurrent", type=int, default=None, help="default: MAX_CONCURRENT_RUNS")
        parser.add_argument("--poll", type=float, default=1.0, help="seconds between queue checks when idle")

    def handle(self, *args, max_concurrent, poll, **options):
        Worker(max_concurrent=max_concurrent).run_forever(poll_seconds=poll)
