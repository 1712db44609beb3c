from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from ml_platform.accounts.models import ApiToken


class Command(BaseCommand):
    help = "Issue a personal API token for a user and print it once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")

    def handle(self, *args, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named '{username}'")
        _, raw = ApiToken.objects.issue(user, name)
        self.stdout.write(raw)
