from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from ml_platform.api import api
from ml_platform.core import views as core_views
from ml_platform.datasets import views as dataset_views
from ml_platform.modeling import views as modeling_views
from ml_platform.projects import views as project_views
from ml_platform.registry import pages as registry_pages
from ml_platform.training import pages as training_pages
from ml_platform.training import view as training_view
from ml_platform.training import view_pipeline as training_view_pipeline
from ml_platform.training import views as training_views
from ml_platform.training import wizard as training_wizard

urlpatterns = [
    path("", project_views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(template_name="core/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", core_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("projects/<int:project_id>/", project_views.project_detail, name="project"),
    path("", include("ml_platform.datasets.urls")),
    path("", include("ml_platform.modeling.urls")),
    path("", include("ml_platform.accounts.urls")),
    path("", include("ml_platform.schedules.urls")),
    path("datasets/<int:dataset_id>/", dataset_views.dataset_detail, name="dataset"),
    path("datasets/<int:dataset_id>/preview/", dataset_views.dataset_preview, name="dataset-preview"),
    path("feature-configs/<int:config_id>/", modeling_views.feature_config_detail, name="feature-config"),
    path("model-configs/<int:config_id>/", modeling_views.model_config_detail, name="model-config"),
    path("projects/<int:project_id>/training/", training_pages.training_page, name="training"),
    path("projects/<int:project_id>/experiments/", training_pages.experiments_page, name="experiments"),
    path("projects/<int:project_id>/experiments/best/", training_pages.best_experiments, name="best-experiments"),
    path("projects/<int:project_id>/models/", registry_pages.models_page, name="models"),
    path("models/<int:registered_id>/versions/", registry_pages.model_drawer, name="model-drawer"),
    path("models/<int:registered_id>/try/", registry_pages.try_it, name="model-try"),
    path("models/<int:registered_id>/<slug:action>/", registry_pages.model_action, name="model-action"),
    path("projects/<int:project_id>/training/wizard/", training_wizard.wizard, name="training-wizard"),
    path("projects/<int:project_id>/training/wizard/summary/", training_wizard.summary, name="training-wizard-summary"),
    path(
        "projects/<int:project_id>/training/wizard/estimate/", training_wizard.estimate, name="training-wizard-estimate"
    ),
    path("projects/<int:project_id>/training/wizard/name/", training_wizard.name_check, name="training-wizard-name"),
    path("projects/<int:project_id>/training/wizard/submit/", training_wizard.submit, name="training-wizard-submit"),
    path("training/compare/", training_pages.compare_page, name="compare"),
    path("training/runs/<int:run_id>/", training_pages.run_page, name="run"),
    path("training/runs/<int:run_id>/card/", training_pages.run_card, name="run-card"),
    path("training/runs/<int:run_id>/view/<slug:tab>/", training_view.run_view, name="run-view"),
    path("training/runs/<int:run_id>/logs/<slug:name>/", training_view_pipeline.stage_log, name="run-stage-log"),
    path("training/runs/<int:run_id>/rerun-form/", training_pages.rerun_form, name="run-rerun-form"),
    path("training/runs/<int:run_id>/statistics/", training_views.run_statistics, name="training-run-statistics"),
    # After every other training/runs/<id>/… page: an action is any other name.
    path("training/runs/<int:run_id>/<slug:action>/", training_pages.run_action, name="run-action"),
]
