from django.shortcuts import render

from ml_platform.audit import services as audit
from ml_platform.modeling import services
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.projects.access import object_for_user


def feature_config_detail(request, config_id: int):
    fc = object_for_user(FeatureConfig, request.user, config_id)
    return render(
        request,
        "modeling/feature_config.html",
        {"fc": fc, "project": fc.project, "breakdown": services.breakdown(fc), "history": audit.history(fc)},
    )


def model_config_detail(request, config_id: int):
    mc = object_for_user(ModelConfig, request.user, config_id)
    return render(
        request,
        "modeling/model_config.html",
        {"mc": mc, "project": mc.project, "counts": services.parameter_counts(mc), "history": audit.history(mc)},
    )
