"""Shared fixtures: named personas, their project, API clients, small data files and a catalog on them
(a feature config, a two-tower model config, a queued run). Plain helpers are in tests/helpers.py.

Personas: Olivia owns the project, Mark is a member, Oscar is an outsider
with a project of his own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from ml_pipeline.spec import STAGES
from ml_platform.projects import services as project_services
from ml_platform.projects.models import Membership
from ml_platform.training.models import TrainingRun
from ml_platform.training.services import run_folder
from tests.helpers import (
    CURRENT_TIME,
    FEATURES,
    PURCHASE_COLUMNS,
    api_client_for,
    copies,
    create_run,
    feature_config_via_api,
    make_user,
    model_config,
)


@pytest.fixture(scope="session")
def django_db_modify_db_settings():
    """Keep the test database's file name as tests/settings.py sets it.

    pytest-django would add an xdist suffix (_gw0); each test process already
    has its own data folder, and the pipelines it starts must open that file.
    """


@pytest.fixture
def olivia(db):
    return make_user("olivia")


@pytest.fixture
def mark(db):
    return make_user("mark")


@pytest.fixture
def oscar(db):
    return make_user("oscar")


@pytest.fixture
def project(olivia, mark):
    project = project_services.create_project(olivia, "b2b-recs", "test project")
    Membership.objects.create(project=project, user=mark, role=Membership.MEMBER)
    return project


@pytest.fixture
def oscars_project(oscar):
    return project_services.create_project(oscar, "oscars-recs")


@pytest.fixture
def api(olivia):
    """Olivia's API client (token auth)."""
    return api_client_for(olivia)


@pytest.fixture
def pages(olivia) -> Client:
    """Olivia logged in to the pages (a session, as her browser has)."""
    client = Client()
    client.force_login(olivia)
    return client


@pytest.fixture
def time_travel(time_machine):
    """Time stands still at CURRENT_TIME until the test moves it (``time_travel.shift(timedelta(...))``).

    Name it first among a test's fixtures, so what the others make is made at CURRENT_TIME too. It moves the
    clock of this process only (not of the worker's children).
    """
    time_machine.move_to(CURRENT_TIME, tick=False)
    return time_machine


@pytest.fixture
def data_dir() -> Path:
    """A folder under the allowed dataset root (DATASET_ALLOWED_ROOTS, see tests/settings.py)."""
    path = Path(settings.DATASET_ALLOWED_ROOTS[0]) / "test-data"
    path.mkdir(parents=True, exist_ok=True)
    return path


PURCHASES_CSV = """order_id,customer,item,ordered_at,qty,segment,category
1,c1,p1,2025-01-01 10:00:00,2,retail,tools
2,c1,p2,2025-01-02 11:00:00,1,retail,garden
3,c2,p1,2025-01-03 12:00:00,5,wholesale,tools
4,c2,p3,2025-01-04 13:00:00,3,wholesale,garden
5,c3,p3,2025-02-01 09:00:00,1,retail,garden
C6,c3,p3,2025-02-02 09:00:00,-1,retail,garden
7,,p2,2025-02-03 09:00:00,4,retail,garden
"""


@pytest.fixture
def purchases_csv(data_dir) -> Path:
    """Seven hand-written purchases: one cancellation (C6) and one without a customer."""
    path = data_dir / "purchases.csv"
    path.write_text(PURCHASES_CSV)
    return path


@pytest.fixture
def purchases_mapping() -> dict:
    return {
        **PURCHASE_COLUMNS,
        "buyer_features": [{"column": "segment"}],
        "product_features": [{"column": "category"}],
    }


@pytest.fixture
def dataset(api, project, purchases_csv, purchases_mapping):
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {"name": "purchases", "source": {"kind": "file", "path": str(purchases_csv)}, "mapping": purchases_mapping},
    )
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def feature_config(api, project, dataset):
    """The purchases' feature config (tests.helpers.FEATURES), made through the API."""
    return feature_config_via_api(api, project, "standard", FEATURES, dataset)


@pytest.fixture
def retrieval(api, project, feature_config):
    return model_config(api, project, "two-tower", {"model_type": "retrieval", "retrieval_k": [5, 10]}, feature_config)


@pytest.fixture
def run_body(dataset, feature_config, retrieval):
    """What the API needs to queue a two-epoch run of the purchases."""
    return {
        "name": "recs",
        "description": "weekly retrieval",
        "dataset_id": dataset["id"],
        "feature_config_id": feature_config["id"],
        "model_config_id": retrieval["id"],
        "training_params": {"epochs": 2, "batch_size": 64},
    }


@pytest.fixture
def pending_run(api, project, run_body):
    """A queued run, never executed."""
    return create_run(api, project, run_body)


@pytest.fixture
def completed_run(pending_run) -> int:
    """A completed, blessed copy of the pending run (its id): what a Schedule button is shown for."""
    (run,) = copies(
        pending_run["id"],
        1,
        status=TrainingRun.COMPLETED,
        blessed=True,
        final_metrics={"recall_at_10": 0.31},
        stages={s: {"status": "completed"} for s in STAGES},
    )
    return run.pk


TRANSFORM_LOG_LINES = 300  # more than the Pipeline tab's tail (training/view_pipeline.py LOG_LINES)


@pytest.fixture
def failed_run_with_logs(pending_run):
    """A copy of the queued run that failed in Transform, as the runner leaves it: Compile, StatisticsGen and
    SchemaGen completed, ExampleGen reused from the cache of an earlier run (``recs-1-cafe0001``, whose folder
    holds its log and artifact), each stage's ``stage.log`` written (Transform's longer than a tail), the
    error with its traceback, and the producer and fingerprints of every artifact. Returns the run."""
    (source,) = copies(pending_run["id"], 1, pipeline_run_id="recs-1-cafe0001", status=TrainingRun.COMPLETED)
    cached = run_folder(source) / "ExampleGen"
    cached.mkdir(parents=True, exist_ok=True)
    (cached / "stage.log").write_text("ExampleGen: read 2,450 rows\n")
    times = {"started_at": "2026-11-30T10:00:00+00:00", "ended_at": "2026-11-30T10:02:05+00:00"}
    stages = {s: {"status": "pending"} for s in STAGES}
    stages.update(
        Compile={"status": "completed", "summary": "spec checked", **times},
        ExampleGen={"status": "cached", "summary": "2,450 examples"},
        StatisticsGen={"status": "completed", **times},
        SchemaGen={"status": "completed", **times},
        Transform={"status": "failed", "started_at": times["started_at"]},
    )
    artifacts = {
        "ExampleGen": {
            "type": "Examples",
            "uri": str(cached),
            "producer": "ExampleGen",
            "run": "recs-1-cafe0001",
            "fingerprint": "a1" * 32,
            "inputs": {"Compile": "c0" * 32},
        }
    }
    (run,) = copies(
        pending_run["id"],
        1,
        pipeline_run_id="recs-2-beef0002",
        status=TrainingRun.FAILED,
        stages=stages,
        artifacts=artifacts,
        error_stage="Transform",
        error_message="vocabulary of product_id is empty",
        error_traceback="Traceback (most recent call last):\n  File transform.py, line 7\nValueError: empty vocabulary",
    )
    folder = run_folder(run)
    for stage in ("Compile", "StatisticsGen", "SchemaGen", "Transform"):
        (folder / stage).mkdir(parents=True, exist_ok=True)
        (folder / stage / "stage.log").write_text(f"{stage} started\n")
    lines = "".join(f"Transform line {n}\n" for n in range(1, TRANSFORM_LOG_LINES + 1))
    (folder / "Transform" / "stage.log").write_text(lines)
    (folder / "worker.log").write_text("worker: claimed the run\n")
    return run


@pytest.fixture
def running_run_with_statistics(pending_run):
    """A copy of the queued run still in the Trainer, whose StatisticsGen left a summary of a train split (80
    examples) and an eval split (20): what the Data insights tab shows while the run goes on."""
    (run,) = copies(
        pending_run["id"],
        1,
        pipeline_run_id="recs-3-5ca1ab1e",
        status=TrainingRun.RUNNING,
        current_stage="Trainer",
        current_epoch=1,
        total_epochs=3,
        stages={**{s: {"status": "completed"} for s in STAGES[:5]}, "Trainer": {"status": "running"}},
    )
    output = run_folder(run) / "StatisticsGen" / "output"
    output.mkdir(parents=True)
    column = {"type": "float", "count": 80, "missing_pct": 0.0, "mean": 2.5, "std": 1.0, "min": 1, "max": 4}
    splits = {
        "train": {"num_examples": 80, "columns": {"qty": column}},
        "eval": {"num_examples": 20, "columns": {"qty": {**column, "count": 20, "mean": 3.1}}},
    }
    (output / "summary.json").write_text(json.dumps({"splits": splits, "features": ["qty"]}))
    artifacts = {"StatisticsGen": {"type": "ExampleStatistics", "uri": str(output.parent), "producer": "StatisticsGen"}}
    TrainingRun.objects.filter(pk=run.pk).update(artifacts=artifacts)
    run.refresh_from_db()
    return run
