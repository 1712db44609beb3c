"""The demo project: a generated B2B purchase log and one config of each kind.

Loading is idempotent: an existing demo project, dataset or config is left
as it is (so a user's edits survive a restart), and missing pieces are added.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.db import transaction

from ml_pipeline import demo_data
from ml_pipeline.demo_configs import DEMO_FEATURE_CONFIG, DEMO_MAPPING, DEMO_MODEL_CONFIGS
from ml_platform.datasets import services as dataset_services
from ml_platform.datasets.models import Dataset
from ml_platform.modeling import services as modeling_services
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.projects.models import Membership, Project

DEMO_USERNAME = "demo"
DEMO_PROJECT = "b2b-recs"
DEMO_DATASET = "Demo purchases"
DEMO_FEATURES = "Standard features"


def demo_password() -> tuple[str, bool]:
    """The demo user's password and whether it is new.

    From ML_PLATFORM_DEMO_PASSWORD, or generated once into the data folder
    (never a password written in the repository).
    """
    from_env = os.environ.get("ML_PLATFORM_DEMO_PASSWORD")
    if from_env:
        return from_env, True
    path = Path(settings.DATA_DIR) / "demo_password"
    if path.exists():
        return path.read_text().strip(), False
    password = secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password)
    return password, True


def _demo_user():
    password, is_new = demo_password()
    user, created = get_user_model().objects.get_or_create(username=DEMO_USERNAME)
    if created or is_new:
        user.set_password(password)
        user.save()
    return user, password


def _demo_data_file(rows: int) -> Path:
    path = Path(settings.DATA_DIR) / "demo" / f"purchases-{rows}.parquet"
    if not path.exists():
        demo_data.write(demo_data.DemoSpec(rows=rows, seed=0), path, format="parquet")
    return path


def _demo_upload_source(project, user, data_file: Path) -> dict:
    """The generated file, uploaded into the demo project like a user's own file."""
    with data_file.open("rb") as handle:
        upload = dataset_services.store_upload(project, user, File(handle, name=data_file.name))
    return {"kind": "upload", "upload_id": upload.pk}


def load_demo(rows: int = 100_000) -> dict:
    """Create (or complete) the demo project; return what a newcomer needs to log in."""
    user, password = _demo_user()
    data_file = _demo_data_file(rows)
    with transaction.atomic():
        project, _ = Project.objects.get_or_create(  # the demo user's own: names are unique per owner only
            name=DEMO_PROJECT,
            created_by=user,
            defaults={"description": "Demo: B2B purchase recommendations on generated data"},
        )
        Membership.objects.get_or_create(project=project, user=user, defaults={"role": Membership.OWNER})

    dataset = Dataset.objects.filter(project=project, name=DEMO_DATASET).first()
    if dataset is None:
        dataset = dataset_services.create_dataset(
            project,
            user,
            name=DEMO_DATASET,
            description=f"{rows:,} generated purchases with planted buyer x product affinity",
            source=_demo_upload_source(project, user, data_file),
            mapping=DEMO_MAPPING,
            filters={},
        )
    elif Path(dataset.source.get("path", "/")).is_relative_to(data_file.parent):
        # Demo projects loaded before sources were confined read the file in the data folder; that folder
        # is no longer readable as a source, so the file becomes one of the project's uploads.
        dataset = dataset_services.update_dataset(dataset, {"source": _demo_upload_source(project, user, data_file)})
    features = FeatureConfig.objects.filter(project=project, name=DEMO_FEATURES).first()
    if features is None:
        features = modeling_services.save_feature_config(
            project,
            user,
            {
                "name": DEMO_FEATURES,
                "description": "IDs, segment, city, category, price and time of purchase",
                "dataset_id": dataset.id,
                "config": DEMO_FEATURE_CONFIG,
            },
        )
    for name, config in DEMO_MODEL_CONFIGS.items():
        if not ModelConfig.objects.filter(project=project, name=name).exists():
            modeling_services.save_model_config(
                project, user, {"name": name, "feature_config_id": features.id, "config": config}
            )
    return {"username": user.username, "password": password, "project": project}
