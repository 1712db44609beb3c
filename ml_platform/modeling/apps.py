from django.apps import AppConfig


class ModelingConfig(AppConfig):
    name = "ml_platform.modeling"
    label = "modeling"
