"""The feature config and model config editing pages (ml_platform.modeling.editing)."""

from django.urls import path

from ml_platform.modeling import editing

urlpatterns = [
    path("projects/<int:project_id>/feature-configs/new/", editing.feature_config_new, name="feature-config-new"),
    path("projects/<int:project_id>/feature-configs/live/", editing.feature_config_live, name="feature-config-live"),
    path("feature-configs/<int:config_id>/edit/", editing.feature_config_edit, name="feature-config-edit"),
    path(
        "feature-configs/<int:config_id>/delete/",
        editing.config_delete,
        {"kind": "feature"},
        name="feature-config-delete",
    ),
    path("projects/<int:project_id>/model-configs/new/", editing.model_config_new, name="model-config-new"),
    path("projects/<int:project_id>/model-configs/live/", editing.model_config_live, name="model-config-live"),
    path("model-configs/<int:config_id>/edit/", editing.model_config_edit, name="model-config-edit"),
    path("model-configs/<int:config_id>/delete/", editing.config_delete, {"kind": "model"}, name="model-config-delete"),
]
