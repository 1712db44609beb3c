"""Start each project's run-number counters at its highest run number, per kind."""

from django.db import migrations
from django.db.models import Max


def initialise(apps, schema_editor):
    TrainingRun = apps.get_model("training", "TrainingRun")
    RunNumberCounter = apps.get_model("training", "RunNumberCounter")
    highest = (TrainingRun.objects.order_by().values("project_id", "kind").annotate(last=Max("run_number")))
    RunNumberCounter.objects.bulk_create(
        [RunNumberCounter(project_id=row["project_id"], kind=row["kind"], last=row["last"]) for row in highest],
        batch_size=1000)


class Migration(migrations.Migration):

    dependencies = [
        ("training", "0005_remote_runs_deliveries_run_counters"),
    ]

    operations = [
        migrations.RunPython(initialise, migrations.RunPython.noop),
    ]
