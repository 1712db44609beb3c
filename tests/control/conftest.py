"""Fixtures of the control-plane tests: catalogs to train on, a ranking model config, the local serving
endpoint, and one real finished run per module."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.helpers import (
    FEATURES,
    a_finished_run,
    catalog_of,
    demo_catalog,
    local_serving,
    model_config,
    serving_settings,
)


@pytest.fixture
def catalog(project, olivia):
    """6,000 generated demo purchases, the demo feature config and a two-tower model: enough to train on."""
    # A folder per test: the pipeline cache must not carry one test's stages into another.
    return demo_catalog(
        project, olivia, Path(django_settings.DATASET_ALLOWED_ROOTS[0]) / "worker-tests" / uuid.uuid4().hex
    )


@pytest.fixture
def small_catalog(project, olivia, purchases_csv, purchases_mapping):
    """The seven hand-written purchases with a feature config and a two-tower model: for tests of a run's
    record (its transitions, its recovery) that never train."""
    return catalog_of(project, olivia, purchases_csv, purchases_mapping, FEATURES, {"model_type": "retrieval"})


@pytest.fixture
def ranking(api, project, feature_config):
    return model_config(api, project, "ranker", {"model_type": "ranking"}, feature_config)


@pytest.fixture
def serving(settings):
    """The local endpoint on a free port with a fresh serving folder; stopped (and gone) afterwards."""
    for name, value in serving_settings().items():
        setattr(settings, name, value)
    with local_serving() as url:
        yield url


@pytest.fixture(scope="module")
def finished(django_db_setup, django_db_blocker):
    """ONE real run executed by the worker for the module's tests (see tests.helpers.a_finished_run)."""
    with a_finished_run(django_db_blocker, "finished") as found:
        yield found
