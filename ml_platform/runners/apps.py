from django.apps import AppConfig


class RunnersConfig(AppConfig):
    name = "ml_platform.runners"
    label = "runners"
    verbose_name = "Runners"

    def ready(self):
        from ml_platform.runners import checks  # noqa: F401 - registers the runner settings' checks
