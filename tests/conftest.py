"""Shared fixtures: named personas, their project, API clients and small data files.

Personas: Olivia owns the project, Mark is a member, Oscar is an outsider
with a project of his own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from ml_platform.accounts.models import ApiToken
from ml_platform.projects import services as project_services
from ml_platform.projects.models import Membership

PASSWORD = "correct-horse-battery"
SHARED_DATASETS = Path(settings.BASE_DIR).parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def django_db_modify_db_settings():
    """Keep the test database's file name as tests/settings.py sets it.

    pytest-django would add an xdist suffix (_gw0); each test process already
    has its own data folder, and the pipelines it starts must open that file.
    """


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

    def delete(self, path, **extra):
        return self._send("delete", path, **extra)

    def upload(self, path, file_path: Path):
        with open(file_path, "rb") as handle:
            return self.client.post(path, {"file": handle}, **self.headers)


def make_user(username: str):
    return get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD)


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


def api_client_for(user) -> JsonClient:
    _, raw = ApiToken.objects.issue(user, "tests")
    return JsonClient(Client(), token=raw)


@pytest.fixture
def api(olivia):
    """Olivia's API client (token auth)."""
    return api_client_for(olivia)


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
        "buyer_id": "customer",
        "product_id": "item",
        "timestamp": "ordered_at",
        "target": "qty",
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
