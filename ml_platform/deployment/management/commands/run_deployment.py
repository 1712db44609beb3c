from django.core.management.base import BaseCommand

from ml_platform.deployment import jobs


class Command(BaseCommand):
    help = "Carry out a model's pending deploy, rollback or undeploy (the worker runs this; see deployment/jobs.py)."

    def add_arguments(self, parser):
        parser.add_argument("deployment_id", type=int)

    def handle(self, *args, deployment_id, **options):
        deployment = jobs.carry_out(deployment_id)
        self.stdout.write(f"{deployment.registered_model}: {deployment.state} ({deployment.message})")
