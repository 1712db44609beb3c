from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from ml_platform.api import api
from ml_platform.core import views as core_views
from ml_platform.datasets import views as dataset_views
from ml_platform.modeling import views as modeling_views
from ml_platform.projects import views as project_views
from ml_platform.training import views as training_views

urlpatterns = [
    path("", project_views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(template_name="core/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", core_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("projects/<int:project_id>/", project_views.project_detail, name="project"),
    path("datasets/<int:dataset_id>/", dataset_views.dataset_detail, name="dataset"),
    path("datasets/<int:dataset_id>/preview/", dataset_views.dataset_preview, name="dataset-preview"),
    path("feature-configs/<int:config_id>/", modeling_views.feature_config_detail, name="feature-config"),
    path("model-configs/<int:config_id>/", modeling_views.model_config_detail, name="model-config"),
    path("training/runs/<int:run_id>/statistics/", training_views.run_statistics, name="training-run-statistics"),
]
