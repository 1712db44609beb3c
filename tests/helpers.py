"""What the tests share besides fixtures: API clients, error tables, polling, free ports, catalogs and runs.

Fixtures live in the conftest.py files; they and the tests call these plain
functions, so no test module imports another.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from ml_pipeline import demo_data
from ml_pipeline.demo_configs import DEMO_FEATURE_CONFIG, DEMO_MAPPING, DEMO_MODEL_CONFIGS
from ml_pipeline.reporting import sign
from ml_platform.accounts.models import ApiToken
from ml_platform.datasets import services as dataset_services
from ml_platform.deployment import serving_process
from ml_platform.modeling import services as modeling_services
from ml_platform.modeling.models import FeatureConfig
from ml_platform.projects import services as project_services
from ml_platform.training import services as training_services
from ml_platform.training.models import TrainingRun
from ml_platform.training.worker import Worker

T = TypeVar("T")

PASSWORD = "correct-horse-battery"
# The instant tests that depend on the time stand at (the ``time_travel`` fixture): "an hour later" is
# CURRENT_TIME + 1 h, whatever the wall clock says.
CURRENT_TIME = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
SHARED_DATASETS = Path(settings.BASE_DIR).parent / "shared" / "datasets"

# The feature config of the seven hand-written purchases (tests/conftest.py's ``purchases_csv``).
FEATURES = {
    "buyer_tower": {
        "features": [
            {"kind": "id", "column": "buyer_id", "embedding_dim": 16, "max_vocab_size": 100},
            {"kind": "categorical", "column": "segment", "embedding_dim": 4, "max_vocab_size": 10},
            {"kind": "timestamp", "column": "timestamp", "periods": ["day_of_week"]},
        ],
        "crosses": [{"columns": ["buyer_id", "segment"], "hash_buckets": 50, "embedding_dim": 2}],
    },
    "product_tower": {
        "features": [
            {"kind": "id", "column": "product_id", "embedding_dim": 16, "max_vocab_size": 100},
            {"kind": "categorical", "column": "category", "embedding_dim": 4, "max_vocab_size": 10},
        ]
    },
    "target": {"column": "target", "transforms": [{"op": "log1p"}, {"op": "clip", "max": 5}]},
}

# The four columns every purchase log the tests write names the same way: who bought what, when, how many.
PURCHASE_COLUMNS = {"buyer_id": "customer", "product_id": "item", "timestamp": "ordered_at", "target": "qty"}

# The shared real purchase log (UCI Online Retail extract), mapped as a customer would bring it.
RETAIL_CSV = SHARED_DATASETS / "online_retail_sample.csv"
needs_retail = pytest.mark.skipif(not RETAIL_CSV.exists(), reason=f"shared dataset folder absent: {RETAIL_CSV}")
RETAIL_MAPPING = {
    "buyer_id": "CustomerID",
    "product_id": "StockCode",
    "timestamp": "InvoiceDate",
    "target": "Quantity",
    "buyer_features": [{"column": "Country"}],
    "product_features": [{"column": "Description"}],
}
DROP_CANCELLATIONS = {"conditions": [{"column": "InvoiceNo", "op": "not_starts_with", "value": "C"}]}


# --------------------------------------------------------------------------- clients and answers


class JsonClient:
    """A Django test client speaking JSON to the API with a bearer token or a session."""

    def __init__(self, client: Client, token: str | None = None):
        self.client = client
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}

    def _send(self, method, path, data=None, **extra):
        kwargs = {**self.headers, **extra}
        if data is not None:
            kwargs.update(data=json.dumps(data), content_type="application/json")
        elif method in ("post", "patch"):  # no body at all, as fetch() or curl -X POST send it
            kwargs.update(data="", content_type="application/json")
        return getattr(self.client, method)(path, **kwargs)

    def get(self, path, **extra):
        return self._send("get", path, **extra)

    def post(self, path, data=None, **extra):
        return self._send("post", path, data, **extra)

    def patch(self, path, data=None, **extra):
        return self._send("patch", path, data, **extra)

    def put(self, path, data=None, **extra):
        return self._send("put", path, data, **extra)

    def delete(self, path, **extra):
        return self._send("delete", path, **extra)

    def upload(self, path, file_path: Path):
        with open(file_path, "rb") as handle:
            return self.client.post(path, {"file": handle}, **self.headers)


def make_user(username: str):
    return get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD)


def api_client_for(user) -> JsonClient:
    _, raw = ApiToken.objects.issue(user, "tests")
    return JsonClient(Client(), token=raw)


def errors_by_field(response, status: int | None = None) -> dict:
    """The one error shape's ``errors`` as {field: message}; with ``status``, the answer must have it too."""
    if status is not None:
        assert response.status_code == status, response.content
    body = response.json()
    assert "error" in body, body
    return {e["field"]: e["message"] for e in body.get("errors", [])}


# --------------------------------------------------------------------------- processes and polling


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 30,
    *,
    step: Callable[[], object] = lambda: None,
    message: str | Callable[[], str] = "timed out",
    interval: float = 0.1,
) -> T:
    """Poll ``predicate`` (after ``step``, each time) until it answers something truthy, and return that.

    ``message`` (or what it returns) is the failure's text once ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        step()
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, message() if callable(message) else message
        time.sleep(interval)


def free_port() -> int:
    """A loopback TCP port nobody listens on (as long as nobody takes it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- catalogs


def demo_catalog(project, user, folder: Path, rows: int = 6_000, seed: int = 5) -> tuple:
    """A dataset of generated demo purchases in ``folder``, the demo feature config and a two-tower model."""
    path = folder / "purchases.parquet"
    demo_data.write(demo_data.DemoSpec(rows=rows, seed=seed, products=300), path)
    return catalog_of(project, user, path, DEMO_MAPPING, DEMO_FEATURE_CONFIG, DEMO_MODEL_CONFIGS["Retrieval two-tower"])


def catalog_of(project, user, path: Path, mapping: dict, features: dict, model: dict) -> tuple:
    """(dataset, feature config, model config) made by the services: the file at ``path`` read with
    ``mapping``, the feature config ``features`` and the model config ``model`` paired with it."""
    dataset = file_dataset(project, user, path, mapping)
    feature_config = modeling_services.save_feature_config(
        project, user, {"name": "features", "dataset_id": dataset.id, "config": features}
    )
    model_config = modeling_services.save_model_config(
        project, user, {"name": "retrieval", "feature_config_id": feature_config.id, "config": model}
    )
    return dataset, feature_config, model_config


def file_dataset(project, user, path: Path, mapping: dict, name: str = "purchases"):
    """A dataset of ``project`` reading the file at ``path`` with ``mapping``, made by the service."""
    return dataset_services.create_dataset(
        project,
        user,
        name=name,
        description="",
        source={"kind": "file", "path": str(path)},
        mapping=mapping,
        filters={},
    )


def feature_config_via_api(api, project, name: str, config: dict, dataset: dict) -> dict:
    """A feature config of ``dataset`` posted to the API; its answer."""
    response = api.post(
        f"/api/projects/{project.id}/feature-configs/", {"name": name, "dataset_id": dataset["id"], "config": config}
    )
    assert response.status_code == 201, response.content
    return response.json()


# --------------------------------------------------------------------------- training runs


def queue_run(project, user, catalog, epochs=2, batch_size=256, **params) -> TrainingRun:
    """A queued training run of ``catalog`` (dataset, feature config, model config), made by the service."""
    dataset, features, model = catalog
    return training_services.create_training_run(
        project,
        user,
        name="recs",
        dataset_id=dataset.id,
        feature_config_id=features.id,
        model_config_id=model.id,
        split_config={"strategy": "time_holdout", "holdout_days": 45},
        training_params={"epochs": epochs, "batch_size": batch_size, "early_stopping": {"enabled": False}},
        **params,
    )


def drive(worker: Worker, run: TrainingRun, until, timeout=180) -> TrainingRun:
    """Step ``worker`` until ``until(run)`` holds (the run re-read each time); the run."""

    def reached():
        worker.step()
        run.refresh_from_db()
        return until(run)

    wait_until(
        reached, timeout, interval=0.2, message=lambda: f"run {run.pk} stuck in {run.status} at {run.current_stage}"
    )
    return run


def plant_an_anomaly(path: Path) -> None:
    """The newest purchase in the demo data at ``path`` (so in the eval split of a time holdout) gets ten
    times the highest price: SchemaGen must report the eval price out of train's range."""
    table = pq.read_table(path)
    prices = table.column("price").to_numpy().copy()
    newest = int(np.argmax(table.column("timestamp").to_numpy()))
    prices[newest] = 10 * prices.max()
    column = table.schema.get_field_index("price")
    pq.write_table(table.set_column(column, table.schema.field(column), pa.array(prices)), path)


def execute_a_run(project, owner) -> TrainingRun:
    """A run of 5k rows of demo data (two epochs), with one planted anomaly (:func:`plant_an_anomaly`),
    executed by the worker to its end, which must be completed."""
    folder = Path(settings.DATASET_ALLOWED_ROOTS[0]) / "training-api-tests" / project.name
    path = folder / "purchases.parquet"
    demo_data.write(demo_data.DemoSpec(rows=5_000, seed=11, products=300), path)
    plant_an_anomaly(path)
    catalog = catalog_of(
        project, owner, path, DEMO_MAPPING, DEMO_FEATURE_CONFIG, DEMO_MODEL_CONFIGS["Retrieval two-tower"]
    )
    worker = Worker(max_concurrent=1)
    try:
        run = drive(worker, queue_run(project, owner, catalog), lambda r: r.is_terminal, timeout=120)
    finally:
        worker.shutdown()
    assert run.status == TrainingRun.COMPLETED, (run.error_stage, run.error_message)
    return run


@contextmanager
def committed_project(django_db_blocker, prefix: str):
    """An owner and their project, committed outside the tests' transactions (so the worker's children and
    a module's tests all see them) and removed afterwards with everything in them.

    ``made.user("mark")`` makes another user of the same suffix, removed afterwards too.
    """
    with django_db_blocker.unblock():
        # Names of their own, so no artifact of another run (or an earlier session) is reused.
        unique = uuid.uuid4().hex[:8]
        owner = make_user(f"{prefix}-{unique}")
        project = project_services.create_project(owner, f"{prefix}-{unique}")
        users = [owner]

        def user(name: str):
            users.append(make_user(f"{name}-{unique}"))
            return users[-1]

        try:
            yield SimpleNamespace(project=project, owner=owner, unique=unique, user=user)
        finally:
            FeatureConfig.objects.filter(project=project).delete()  # they protect their datasets
            project.delete()
            for made in users:
                made.delete()


@contextmanager
def a_finished_run(django_db_blocker, prefix: str):
    """A run executed by the worker (see :func:`execute_a_run`), committed outside the tests' transactions and
    removed afterwards, with its owner and project."""
    with committed_project(django_db_blocker, prefix) as made:
        yield SimpleNamespace(
            run=execute_a_run(made.project, made.owner),
            project=made.project,
            owner=made.owner,
            api=api_client_for(made.owner),
        )


def model_config(api, project, name: str, config: dict, feature_config: dict | None = None) -> dict:
    body = {"name": name, "config": config}
    if feature_config:
        body["feature_config_id"] = feature_config["id"]
    response = api.post(f"/api/projects/{project.id}/model-configs/", body)
    assert response.status_code == 201, response.content
    return response.json()


def runs_url(project) -> str:
    return f"/api/projects/{project.id}/training-runs/"


def create_run(api, project, body, **changes) -> dict:
    response = api.post(runs_url(project), {**body, **changes})
    assert response.status_code == 201, response.content
    return response.json()


def cancelled(api, run: dict) -> dict:
    response = api.post(f"/api/training-runs/{run['id']}/cancel/")
    assert response.status_code == 200, response.content
    return response.json()


def copies(run_id: int, count: int, **fields) -> list[TrainingRun]:
    """Runs like ``run_id`` (same project and configs), inserted at once: list tests need many."""
    source = TrainingRun.objects.get(pk=run_id)
    last = TrainingRun.objects.filter(project_id=source.project_id).order_by("-run_number").first().run_number
    made = []
    for offset in range(1, count + 1):
        clone = TrainingRun.objects.get(pk=run_id)
        clone.pk = None
        clone.run_number = last + offset
        for name, value in fields.items():
            setattr(clone, name, value)
        made.append(clone)
    return TrainingRun.objects.bulk_create(made)


# --------------------------------------------------------------------------- remote runners' webhooks


def signed(run, body: bytes, secret=None, timestamp=None, delivery_id=None) -> dict:
    """The headers of a delivery, signed as WebhookReporter signs it."""
    timestamp = timestamp or str(int(time.time()))
    delivery_id = delivery_id or uuid.uuid4().hex
    return {
        "HTTP_X_TIMESTAMP": timestamp,
        "HTTP_X_DELIVERY_ID": delivery_id,
        "HTTP_X_SIGNATURE": sign(secret or run.webhook_secret, timestamp, delivery_id, body),
    }


def send_webhook(run_id: int, path: str, body: bytes, headers: dict):
    return Client().post(
        f"/api/training-runs/{run_id}/webhook/{path}/", body, content_type="application/json", **headers
    )


def post_webhook(run, path, event, **signing):
    """``event`` delivered to the run's webhook ``path``, signed with the run's secret (or ``signing``)."""
    body = json.dumps(event).encode()
    return send_webhook(run.pk, path, body, signed(run, body, **signing))


# --------------------------------------------------------------------------- pipeline specs


def compile_spec_dict(path, **changes) -> dict:
    """A Compile-only spec over the hand-written purchases CSV at ``path``; ``section__field=value`` changes
    one field of a section, ``section=value`` replaces the section."""
    spec = {
        "name": "compile-test",
        "dataset": purchases_dataset(path, buyer_features=[{"column": "segment"}]),
        "features": {
            "buyer_tower": {
                "features": [
                    {"kind": "id", "column": "buyer_id", "embedding_dim": 8},
                    {"kind": "categorical", "column": "segment", "embedding_dim": 4},
                ]
            },
            "product_tower": {"features": [{"kind": "id", "column": "product_id", "embedding_dim": 8}]},
            "target": {"column": "target"},
        },
        "model": {"model_type": "multitask"},
        "stages": ["Compile"],
    }
    return with_changes(spec, **changes)


def purchases_dataset(path, **features) -> dict:
    """The ``dataset`` section of a spec reading the purchase log at ``path``: PURCHASE_COLUMNS plus
    ``features`` (``buyer_features=[...]``, ``product_features=[...]``)."""
    return {"source": {"kind": "file", "path": str(path)}, "mapping": {**PURCHASE_COLUMNS, **features}}


def with_changes(spec: dict, **changes) -> dict:
    """``spec`` (changed in place) where ``section__field=value`` changes one field of a section and
    ``section=value`` replaces the section."""
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            spec[section] = {**spec.get(section, {}), field: value}
        else:
            spec[section] = value
    return spec


# --------------------------------------------------------------------------- the local serving endpoint

SERVING_TOKEN = "deploy-test-token"


def carry_out_deployments() -> int:
    """What the worker does with the deploys, rollbacks and undeploys the API recorded, here and now
    (``ml_platform.deployment.jobs``); how many were carried out."""
    from ml_platform.deployment import jobs
    from ml_platform.deployment.models import Deployment

    pending = list(Deployment.objects.exclude(pending_action="").values_list("pk", flat=True))
    for deployment_id in pending:
        jobs.carry_out(deployment_id)
    return len(pending)


def serving_settings() -> dict:
    """Settings for a local endpoint of the tests' own: a free loopback port, and a token, so every call the
    platform makes to it must send one."""
    return {
        "SERVING_HOST": "127.0.0.1",
        "SERVING_PORT": free_port(),
        "SERVING_LOAD_TIMEOUT": 120,
        "SERVING_TOKEN": SERVING_TOKEN,
    }


@contextmanager
def local_serving():
    """The local endpoint (as the settings name it) with a fresh serving folder; its URL. The server is
    stopped afterwards, and must be gone."""
    serving_process.stop_server()
    shutil.rmtree(Path(settings.DATA_DIR) / "serving", ignore_errors=True)
    try:
        yield f"http://{settings.SERVING_HOST}:{settings.SERVING_PORT}"
    finally:
        info = serving_process.read_pidfile()
        serving_process.stop_server()
    if info is not None:
        wait_until(lambda: not pid_alive(info.pid), timeout=5, message="the serving process outlived the test")
    assert serving_process.read_pidfile() is None


@contextmanager
def served_project(django_db_blocker, prefix: str):
    """A committed project (:func:`committed_project`) with the tests' own local endpoint running
    (:func:`local_serving`): the stories that deploy to it. Yields (the project's namespace, the URL)."""
    with (
        committed_project(django_db_blocker, prefix) as made,
        override_settings(**serving_settings()),
        local_serving() as serving,
    ):
        yield made, serving
