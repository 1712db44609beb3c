from django.shortcuts import render
from django.urls import reverse

from ml_platform.audit import services as audit
from ml_platform.modeling import services
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.projects.access import object_for_user


def _config_page(request, template: str, config: FeatureConfig | ModelConfig, **context):
    """A config's page: its project (for the navigation) and its history beside what the page shows."""
    kind = "feature-config" if isinstance(config, FeatureConfig) else "model-config"
    return render(
        request,
        template,
        {
            **context,
            "project": config.project,
            "history": audit.history(config),
            "delete_url": reverse(f"{kind}-delete", args=[config.id]),
        },
    )


def feature_config_detail(request, config_id: int):
    fc = object_for_user(FeatureConfig, request.user, config_id)
    return _config_page(request, "modeling/feature_config.html", fc, fc=fc, breakdown=services.breakdown(fc))


def model_config_detail(request, config_id: int):
    mc = object_for_user(ModelConfig, request.user, config_id)
    return _config_page(
        request,
        "modeling/model_config.html",
        mc,
        mc=mc,
        counts=services.parameter_counts(mc),
        most=services.parameter_counts_at_max_vocab(mc),
    )
