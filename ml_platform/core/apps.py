from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "ml_platform.core"
    label = "core"
