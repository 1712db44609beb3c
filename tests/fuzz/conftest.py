"""A live platform for the fuzzer: gunicorn on a free port, in a data folder of its own, seeded through the API.

The server is another process with its own SQLite database, uploads, pipeline root, MLflow store and
serving folder, so nothing a generated request does (deleting the project, renaming everything) reaches
the test process or the other tests' data. The worker is never started: the runs and experiments the
fuzzer creates stay pending and nothing trains. Its serving port is one nobody listens on.

The seed is made in a fresh database, in a fixed order, so its ids are known before the server starts
(``SEEDED_IDS``): the fuzzer's schema config binds those ids to the path and body parameters of the same
names, so generated requests reach real objects and not only 404s.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from ml_pipeline import demo_data
from ml_pipeline.demo_configs import DEMO_FEATURE_CONFIG, DEMO_MAPPING, DEMO_MODEL_CONFIGS
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
USERNAME, PASSWORD = "fuzzer", "fuzz-horse-battery-staple"
START_TIMEOUT = 60.0
# What the seed below makes, in a fresh database (one user, one project, ...), by the parameter names the
# API's paths and bodies use. The fixture checks that the server answered exactly these.
SEEDED_IDS: dict[str, list[int]] = {
    "project_id": [1],
    "upload_id": [1],
    "dataset_id": [1],
    "feature_config_id": [1],
    "model_config_id": [1, 2, 3],
    "experiment_id": [1],
    "run_id": [1, 2],  # the experiment and the training run share the runs table
    "registered_id": [1],
    "token_id": [1],
}
SEEDED_COLUMNS = list(demo_data.COLUMNS)  # the uploaded CSV's
# Settings that would point the throwaway deployment at something real: dropped from its environment.
UNSET_PREFIXES = (
    "MLP_TEST_",
    "DATABASE_",
    "PIPELINE_",
    "MLFLOW_",
    "SERVING_",
    "DATASET_",
    "STATIC_",
    "SECRET_KEY",
    "ML_PLATFORM_",
    "PYTEST_",
    "DJANGO_",
)


# Deleting runs last, the seeded objects' children before their parents and the fuzzer's own token at the very
# end, so every other operation meets the seeded project whole (an early DELETE /projects/1/ or
# /tokens/1/ would leave the rest of the run 404s and 401s).
DELETED_LAST = (
    "/api/experiments/",
    "/api/training-runs/",
    "/api/model-configs/",
    "/api/feature-configs/",
    "/api/datasets/",
    "/api/projects/",
    "/api/tokens/",
)
_OPERATION = re.compile(r"\[(?P<method>[A-Z]+) (?P<path>/\S+)\]")


def _run_order(item) -> int:
    operation = _OPERATION.search(item.name)
    if operation is None or operation["method"] != "DELETE":
        return -1
    return next((i for i, prefix in enumerate(DELETED_LAST) if operation["path"].startswith(prefix)), len(DELETED_LAST))


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if here in Path(item.path).parents]
    ordered = sorted((items[i] for i in slots), key=_run_order)  # stable: the schema's order otherwise
    for slot, item in zip(slots, ordered):
        items[slot] = item


@dataclass
class FuzzServer:
    url: str
    token: str
    log_path: Path

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    @property
    def access_log(self) -> Path:
        return self.log_path.with_name("access.log")


def _server_env(data_dir: Path, serving_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(UNSET_PREFIXES)}
    env.update(
        ML_PLATFORM_DATA_DIR=str(data_dir),
        DJANGO_SETTINGS_MODULE="ml_platform.settings",
        SERVING_HOST="127.0.0.1",
        SERVING_PORT=str(serving_port),
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    return env


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the fuzz server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still loading the app
            pass
        time.sleep(0.1)
    raise AssertionError(f"the fuzz server did not answer within {START_TIMEOUT:.0f}s:\n{log_path.read_text()}")


def _created(response: requests.Response, log_path: Path) -> dict:
    assert response.status_code == 201, (
        f"seeding {response.request.method} {response.request.url}: "
        f"{response.status_code} {response.text[:2000]}\nThe server's log:\n{log_path.read_text()[-5000:]}"
    )
    return response.json()


def _seed(url: str, token: str, data_dir: Path, log_path: Path) -> dict[str, list[int]]:
    """A project with real objects, made through the API as a user would: an uploaded CSV, its dataset,
    a feature config, one model config per type, a pending experiment and a pending training run."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    created = functools.partial(_created, log_path=log_path)
    project = created(session.post(f"{url}/api/projects/", json={"name": "fuzz-recs", "description": "seeded"}))
    base = f"{url}/api/projects/{project['id']}"
    csv_path = data_dir.parent / "purchases.csv"
    demo_data.write(demo_data.DemoSpec(rows=1_000, seed=0), csv_path, format="csv")
    with open(csv_path, "rb") as handle:
        upload = created(session.post(f"{base}/uploads/", files={"file": ("purchases.csv", handle, "text/csv")}))
    dataset = created(
        session.post(
            f"{base}/datasets/",
            json={
                "name": "purchases",
                "source": {"kind": "upload", "upload_id": upload["id"]},
                "mapping": DEMO_MAPPING,
            },
        )
    )
    features = created(
        session.post(
            f"{base}/feature-configs/",
            json={"name": "features", "dataset_id": dataset["id"], "config": DEMO_FEATURE_CONFIG},
        )
    )
    models = [
        created(
            session.post(
                f"{base}/model-configs/", json={"name": name, "feature_config_id": features["id"], "config": config}
            )
        )
        for name, config in DEMO_MODEL_CONFIGS.items()
    ]
    catalog = {"dataset_id": dataset["id"], "feature_config_id": features["id"], "model_config_id": models[0]["id"]}
    experiment = created(
        session.post(
            f"{base}/experiments/",
            json={**catalog, "name": "small", "split_config": {"sample_percent": 10}, "training_params": {"epochs": 1}},
        )
    )
    run = created(
        session.post(
            f"{base}/training-runs/", json={**catalog, "name": "weekly-recs", "training_params": {"epochs": 1}}
        )
    )
    assert upload["columns"] and [c["name"] for c in upload["columns"]] == SEEDED_COLUMNS, upload["columns"]
    registered = session.get(f"{base}/registered-models/").json()
    tokens = session.get(f"{url}/api/tokens/").json()
    return {
        "project_id": [project["id"]],
        "upload_id": [upload["id"]],
        "dataset_id": [dataset["id"]],
        "feature_config_id": [features["id"]],
        "model_config_id": [m["id"] for m in models],
        "experiment_id": [experiment["id"]],
        "run_id": sorted([experiment["id"], run["id"]]),
        "registered_id": [m["id"] for m in registered["results"]],
        "token_id": [t["id"] for t in tokens],
    }


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory) -> FuzzServer:
    """The platform served by gunicorn (as ``run_platform`` serves it, without the worker), seeded."""
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    data_dir.mkdir()
    env = _server_env(data_dir, serving_port=free_port())
    _manage(env, "migrate", "--noinput", "-v", "0")
    token = _manage(
        env,
        "shell",
        "--no-imports",
        "-v",
        "0",
        "-c",
        (
            "from django.contrib.auth import get_user_model\n"
            "from ml_platform.accounts.models import ApiToken\n"
            f"user = get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r})\n"
            "print(ApiToken.objects.issue(user, 'fuzz')[1])\n"
        ),
    ).strip()
    log_path = data_dir.parent / "server.log"
    # The listening socket is made here and handed over, so no other process can take the port in between.
    with socket.create_server(("127.0.0.1", 0)) as listener, open(log_path, "wb") as log:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "ml_platform.wsgi:application",
                "--bind",
                f"fd://{listener.fileno()}",
                "--workers",
                "1",
                "--timeout",
                "30",
                "--graceful-timeout",
                "5",
                "--log-level",
                "warning",
                "--access-logfile",
                str(log_path.with_name("access.log")),
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=[listener.fileno()],
        )
    try:
        _wait_until_up(url, process, log_path)
        ids = _seed(url, token, data_dir, log_path)
        assert ids == SEEDED_IDS, f"the seed made other ids than the fuzzer's config binds: {ids}"
        yield FuzzServer(url=url, token=token, log_path=log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def served_openapi(fuzz_server) -> dict:
    """``/api/openapi.json`` as the live server serves it to a token, as a code generator reads it."""
    schema = requests.get(
        f"{fuzz_server.url}/api/openapi.json", timeout=10, headers={"Authorization": f"Bearer {fuzz_server.token}"}
    )
    assert schema.status_code == 200, schema.text[:500]
    return schema.json()
