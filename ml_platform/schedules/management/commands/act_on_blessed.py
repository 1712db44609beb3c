from django.core.management.base import BaseCommand

from ml_platform.schedules import actions


class Command(BaseCommand):
    help = (
        "Push (and deploy) the blessed run of one claimed schedule firing, as its schedule says: what the "
        "worker runs in a child process, off its tick (see ml_platform/schedules/actions.py)."
    )

    def add_arguments(self, parser):
        parser.add_argument("firing_id", type=int)

    def handle(self, *args, firing_id, **options):
        firing = actions.act_on_blessed(firing_id)
        self.stdout.write(f"firing {firing.pk}: {firing.blessed_action or 'nothing done'}")
