from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "ml_platform.datasets"
    label = "datasets"
