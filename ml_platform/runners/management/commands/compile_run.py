"""``manage.py compile_run <run id> [--runner vertex|kubeflow]``: print the KFP v2 pipeline spec (IR YAML) that
submitting the run would send, without sending it: the way to inspect a remote run offline."""

from django.core.management.base import BaseCommand, CommandError

from ml_pipeline.errors import ConfigError
from ml_platform.runners import config, services
from ml_platform.training.models import TrainingRun


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("run_id", type=int)
        parser.add_argument("--runner", choices=("vertex", "kubeflow"), help="default: the run's own runner")

    def handle(self, *args, run_id: int, runner: str | None, **options):
        run = TrainingRun.objects.select_related("project").filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"no training run {run_id}")
        backend = runner or services.runner_of(run)
        if backend == "local":
            raise CommandError(f"run {run_id} runs on the local worker; name --runner vertex or kubeflow")
        try:
            config.require(backend)
            text, _ = services.compile_run(run, backend)
        except ConfigError as error:
            raise CommandError("; ".join(str(problem) for problem in error.problems)) from None
        self.stdout.write(text)
