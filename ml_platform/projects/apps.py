from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "ml_platform.projects"
    label = "projects"
