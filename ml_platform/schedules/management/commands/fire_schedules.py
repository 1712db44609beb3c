from django.core.management.base import BaseCommand

from ml_platform.schedules import scheduler


class Command(BaseCommand):
    help = (
        "One tick of the embedded scheduler (what the worker does every second): fire the schedules that are "
        "due, settle the runs that ended. Safe beside running workers: each occurrence fires once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--fired-by", default="fire_schedules", help="who the firings name")

    def handle(self, *args, fired_by, **options):
        done = scheduler.tick(fired_by)
        self.stdout.write(f"{done} schedule event(s)")
