from django.core.management.base import BaseCommand

from ml_platform.core.demo import load_demo


class Command(BaseCommand):
    help = "Create the demo user and the demo project (dataset, feature config, one model config per type)."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=100_000, help="rows of generated purchases")

    def handle(self, *args, rows, **options):
        result = load_demo(rows=rows)
        self.stdout.write(f"Demo project '{result['project'].name}' ready; log in as {result['username']}")
