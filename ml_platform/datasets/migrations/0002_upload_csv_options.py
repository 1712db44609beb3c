from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("datasets", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="upload",
            name="csv_options",
            field=models.JSONField(
                blank=True, default=dict, help_text="How the file was read (ml_pipeline.config.dataset.CsvOptions)"
            ),
        ),
    ]
