"""The project navigation bar every project page shows (base.html): its sections, with counts."""

from __future__ import annotations

from django import template
from django.db.models import Count
from django.urls import reverse

from ml_platform.registry.models import RegisteredModel
from ml_platform.training.models import TrainingRun

register = template.Library()


def sections(project) -> list[dict]:
    """The bar's entries in order: name, URL, count, and the key a page names itself by (``nav_section``)."""
    runs = dict(TrainingRun.objects.filter(project=project).order_by().values_list("kind").annotate(n=Count("id")))
    project_url = reverse("project", args=[project.id])
    return [
        {"key": "datasets", "name": "Datasets", "url": f"{project_url}#datasets", "count": project.datasets.count()},
        {
            "key": "configs",
            "name": "Configs",
            "url": f"{project_url}#feature-configs",
            "count": project.feature_configs.count() + project.model_configs.count(),
        },
        {
            "key": "experiments",
            "name": "Experiments",
            "url": reverse("experiments", args=[project.id]),
            "count": runs.get(TrainingRun.EXPERIMENT, 0),
        },
        {
            "key": "training",
            "name": "Training",
            "url": reverse("training", args=[project.id]),
            "count": runs.get(TrainingRun.TRAINING, 0),
        },
        {
            "key": "models",
            "name": "Models",
            "url": reverse("models", args=[project.id]),
            "count": RegisteredModel.objects.filter(project=project).count(),
        },
    ]


# The section a page belongs to when it names none (``nav_section``), by its URL name's beginning.
SECTION_OF_PAGE = (
    ("dataset", "datasets"),
    ("upload", "datasets"),
    ("feature-config", "configs"),
    ("model-config", "configs"),
    ("training", "training"),
    ("run", "training"),
    ("model", "models"),
)


def current_section(context) -> str | None:
    if context.get("nav_section"):
        return context["nav_section"]
    request = context.get("request")
    match = getattr(request, "resolver_match", None)
    name = (match.url_name or "") if match else ""
    return next((section for prefix, section in SECTION_OF_PAGE if name.startswith(prefix)), None)


@register.inclusion_tag("projects/_nav.html", takes_context=True)
def project_nav(context, project) -> dict:
    return {"project": project, "sections": sections(project), "current": current_section(context)}
