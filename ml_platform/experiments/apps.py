from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "ml_platform.experiments"
    label = "experiments"
