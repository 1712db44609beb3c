from django.apps import AppConfig


class DeploymentConfig(AppConfig):
    name = "ml_platform.deployment"
    label = "deployment"
    verbose_name = "Deployment"

    def ready(self):
        from ml_platform.deployment import checks  # noqa: F401 - registers the serving endpoint's checks
