from django.apps import AppConfig


class DeploymentConfig(AppConfig):
    name = "ml_platform.deployment"
    label = "deployment"
    verbose_name = "Deployment"
