"""The demo loader: a demo user and project with one dataset, one feature config and a model config per type."""

from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from ml_platform.core.demo import DEMO_PROJECT, load_demo
from ml_platform.datasets.models import Dataset
from ml_platform.modeling import services as modeling_services
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.projects.models import Project

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fixed_password(monkeypatch):
    monkeypatch.setenv("ML_PLATFORM_DEMO_PASSWORD", "demo-password-for-tests")


def test_it_loads_a_complete_demo_project():
    result = load_demo(rows=5_000)
    project = Project.objects.get(name=DEMO_PROJECT)
    assert project.memberships.get().user.username == result["username"] == "demo"

    dataset = project.datasets.get()
    assert dataset.preview["rows"] == 5_000
    assert dataset.preview["summary"].startswith("5K rows | ")
    assert dataset.source == {"kind": "upload", "upload_id": project.uploads.get().pk}

    features = project.feature_configs.get()
    assert features.dataset == dataset
    assert sorted(project.model_configs.values_list("model_type", flat=True)) == ["multitask", "ranking", "retrieval"]
    for model_config in project.model_configs.all():
        counts = modeling_services.parameter_counts(model_config)
        assert counts["total"] > 0
        assert ("rating_head" in counts) == (model_config.model_type != "retrieval")


def test_the_demo_user_can_log_in_with_the_printed_password(client):
    load_demo(rows=2_000)
    logged_in = client.post("/login/", {"username": "demo", "password": "demo-password-for-tests"})
    assert logged_in.status_code == 302 and logged_in["Location"] == "/"
    assert DEMO_PROJECT in client.get("/").content.decode()


def test_loading_twice_changes_nothing_and_keeps_edits():
    load_demo(rows=2_000)
    dataset = Dataset.objects.get()
    dataset.description = "edited by a user"
    dataset.save()
    call_command("load_demo", rows=2_000)
    assert Project.objects.count() == 1
    assert Dataset.objects.get().description == "edited by a user"
    assert FeatureConfig.objects.count() == 1
    assert ModelConfig.objects.count() == 3


def test_the_generated_password_is_kept_out_of_the_repository(monkeypatch):
    monkeypatch.delenv("ML_PLATFORM_DEMO_PASSWORD")
    password_file = Path(settings.DATA_DIR) / "demo_password"
    password_file.unlink(missing_ok=True)
    result = load_demo(rows=2_000)
    assert password_file.read_text() == result["password"]
    assert oct(password_file.stat().st_mode)[-3:] == "600"
    assert len(result["password"]) >= 12
