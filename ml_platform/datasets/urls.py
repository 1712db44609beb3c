"""The dataset editing pages (ml_platform.datasets.editing); the read-only pages are in ml_platform/urls.py."""

from django.urls import path

from ml_platform.datasets import editing

urlpatterns = [
    path("projects/<int:project_id>/datasets/new/", editing.dataset_new, name="dataset-new"),
    path("projects/<int:project_id>/datasets/live/", editing.dataset_live, name="dataset-live"),
    path("projects/<int:project_id>/uploads/new/", editing.upload_new, name="upload-new"),
    path("uploads/<int:upload_id>/delete/", editing.upload_delete, name="upload-delete"),
    path("datasets/<int:dataset_id>/edit/", editing.dataset_edit, name="dataset-edit"),
    path("datasets/<int:dataset_id>/delete/", editing.dataset_delete, name="dataset-delete"),
]
