from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    name = "ml_platform.schedules"
    label = "schedules"
    verbose_name = "Training schedules"
