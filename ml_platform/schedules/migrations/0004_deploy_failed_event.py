"""A failed scheduled deploy gets its own event (it was notified as ``run_failed``). Targets that chose
``run_failed`` heard of failed deploys until now, so they are subscribed to ``deploy_failed`` too."""

from django.db import migrations, models


def subscribe_run_failed_targets(apps, schema_editor):
    NotificationTarget = apps.get_model("schedules", "NotificationTarget")
    for target in NotificationTarget.objects.all():
        if "run_failed" in target.events and "deploy_failed" not in target.events:
            target.events = [*target.events, "deploy_failed"]
            target.save(update_fields=["events"])


def unsubscribe(apps, schema_editor):
    NotificationTarget = apps.get_model("schedules", "NotificationTarget")
    for target in NotificationTarget.objects.all():
        if "deploy_failed" in target.events:
            target.events = [event for event in target.events if event != "deploy_failed"]
            target.save(update_fields=["events"])


class Migration(migrations.Migration):
    dependencies = [
        ("schedules", "0003_project_targets_and_background_deploy"),
    ]

    operations = [
        migrations.AlterField(
            model_name="notificationdelivery",
            name="event",
            field=models.CharField(
                choices=[
                    ("run_failed", "A run failed"),
                    ("not_blessed", "A run was not blessed"),
                    ("auto_paused", "The schedule paused itself"),
                    ("deployed", "A new version was deployed"),
                    ("deploy_failed", "A scheduled deploy failed"),
                ],
                max_length=20,
            ),
        ),
        migrations.RunPython(subscribe_run_failed_targets, unsubscribe),
    ]
