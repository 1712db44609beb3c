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
from django.db import transaction

from ml_platform.datasets import services as dataset_services
from ml_platform.datasets.models import Dataset
from ml_platform.modeling import services as modeling_services
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.projects.models import Membership, Project
from ml_pipeline import demo_data

DEMO_USERNAME = "demo"
DEMO_PROJECT = "b2b-recs"
DEMO_DATASET = "Demo purchases"
DEMO_FEATURES = "Standard features"

DEMO_MAPPING = {
    "buyer_id": "buyer_id",
    "product_id": "product_id",
    "timestamp": "timestamp",
    "target": "quantity",
    "buyer_features": [{"column": "buyer_segment"}, {"column": "buyer_city"}],
    "product_features": [
        {"column": "product_category"},
        {"column": "product_subcategory"},
        {"column": "price", "dtype": "float"},
    ],
}

DEMO_FEATURE_CONFIG = {
    "buyer_tower": {
        "features": [
            {"kind": "id", "column": "buyer_id", "embedding_dim": 32, "max_vocab_size": 50_000},
            {"kind": "categorical", "column": "buyer_segment", "embedding_dim": 4, "max_vocab_size": 50},
            {"kind": "categorical", "column": "buyer_city", "embedding_dim": 8, "max_vocab_size": 500},
            {"kind": "timestamp", "column": "timestamp", "transform": "cyclical",
             "periods": ["day_of_week", "month_of_year"]},
        ],
        "crosses": [{"columns": ["buyer_segment", "buyer_city"], "hash_buckets": 1000, "embedding_dim": 8}],
    },
    "product_tower": {
        "features": [
            {"kind": "id", "column": "product_id", "embedding_dim": 32, "max_vocab_size": 20_000},
            {"kind": "categorical", "column": "product_category", "embedding_dim": 8, "max_vocab_size": 100},
            {"kind": "categorical", "column": "product_subcategory", "embedding_dim": 8, "max_vocab_size": 1000},
            {"kind": "numeric", "column": "price", "transform": "bucketize", "buckets": 10, "embedding_dim": 4},
        ],
        "crosses": [
            {"columns": ["product_category", "product_subcategory"], "hash_buckets": 500, "embedding_dim": 8}
        ],
    },
    "target": {"column": "target", "transforms": [{"op": "log1p"}]},
}

DEMO_MODEL_CONFIGS = {
    "Retrieval two-tower": {
        "model_type": "retrieval",
        "buyer_tower": [{"type": "dense", "units": 128}, {"type": "dropout", "rate": 0.1}, {"type": "dense", "units": 64}],
        "product_tower": [{"type": "dense", "units": 128}, {"type": "dropout", "rate": 0.1}, {"type": "dense", "units": 64}],
        "output_dim": 32,
        "optimizer": "adagrad",
        "learning_rate": 0.1,
    },
    "Ranking": {
        "model_type": "ranking",
        "buyer_tower": [{"type": "dense", "units": 64}],
        "product_tower": [{"type": "dense", "units": 64}],
        "output_dim": 32,
        "rating_head": [{"type": "dense", "units": 64}, {"type": "batch_norm"}, {"type": "dense", "units": 32}],
        "optimizer": "adam",
        "learning_rate": 0.001,
    },
    "Hybrid": {
        "model_type": "multitask",
        "buyer_tower": [{"type": "dense", "units": 128}, {"type": "dense", "units": 64}],
        "product_tower": [{"type": "dense", "units": 128}, {"type": "dense", "units": 64}],
        "output_dim": 32,
        "rating_head": [{"type": "dense", "units": 64}],
        "optimizer": "adagrad",
        "learning_rate": 0.1,
        "loss_weights": {"retrieval": 1.0, "rating": 0.5},
    },
}


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


def load_demo(rows: int = 100_000) -> dict:
    """Create (or complete) the demo project; return what a newcomer needs to log in."""
    user, password = _demo_user()
    data_file = _demo_data_file(rows)
    with transaction.atomic():
        project, _ = Project.objects.get_or_create(
            name=DEMO_PROJECT,
            defaults={"description": "Demo: B2B purchase recommendations on generated data", "created_by": user},
        )
        Membership.objects.get_or_create(project=project, user=user, defaults={"role": Membership.OWNER})

    dataset = Dataset.objects.filter(project=project, name=DEMO_DATASET).first()
    if dataset is None:
        dataset = dataset_services.create_dataset(
            project,
            user,
            name=DEMO_DATASET,
            description=f"{rows:,} generated purchases with planted buyer x product affinity",
            source={"kind": "file", "path": str(data_file), "format": "parquet"},
            mapping=DEMO_MAPPING,
            filters={},
        )
    features = FeatureConfig.objects.filter(project=project, name=DEMO_FEATURES).first()
    if features is None:
        features = modeling_services.save_feature_config(
            project,
            user,
            {"name": DEMO_FEATURES, "description": "IDs, segment, city, category, price and time of purchase",
             "dataset_id": dataset.id, "config": DEMO_FEATURE_CONFIG},
        )
    for name, config in DEMO_MODEL_CONFIGS.items():
        if not ModelConfig.objects.filter(project=project, name=name).exists():
            modeling_services.save_model_config(
                project, user, {"name": name, "feature_config_id": features.id, "config": config}
            )
    return {"username": user.username, "password": password, "project": project}
