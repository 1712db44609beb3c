from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "ml_platform.registry"
    label = "registry"
