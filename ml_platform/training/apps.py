from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "ml_platform.training"
    label = "training"
