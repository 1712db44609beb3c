"""Every page and API endpoint needs a login or a token; other projects' objects answer 404."""

import json
import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from ml_platform.accounts.models import ApiToken
from ml_platform.api import api as ninja_api
from tests.helpers import api_client_for


def all_api_operations():
    """(method, path template) of every API operation, read from the OpenAPI schema.

    Runner webhooks are authenticated by a per-run signature instead; their
    refusals are specified in test_training_webhooks.py.
    """
    schema = ninja_api.get_openapi_schema()
    for path, methods in schema["paths"].items():
        if "/webhook/" in path:
            continue
        for method in methods:
            yield method, path


def fill(path: str) -> str:
    return re.sub(r"\{[a-z_]+\}", "1", path)


@pytest.mark.django_db
@pytest.mark.parametrize("method, path", list(all_api_operations()))
def test_every_api_operation_answers_401_without_credentials(method, path):
    response = getattr(Client(), method)(fill(path))
    assert response.status_code == 401, f"{method.upper()} {path} answered {response.status_code}"
    assert "Authentication required" in response.json()["error"]


@pytest.mark.django_db
def test_a_wrong_token_is_refused():
    response = Client().get("/api/projects/", HTTP_AUTHORIZATION="Bearer mlp_not-a-real-token")
    assert response.status_code == 401


def page_paths():
    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if str(pattern.pattern) in ("admin/", "api/"):
                    continue
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern)

    for route in walk(get_resolver().url_patterns):
        # Every path converter filled in: ids with 1, slugs (an action's name) with a word.
        yield "/" + re.sub(r"<slug:\w+>", "x", re.sub(r"<int:\w+>", "1", route))


PUBLIC_PAGES = {"/login/", "/logout/", "/healthz"}


@pytest.mark.django_db
@pytest.mark.parametrize("path", [p for p in page_paths() if p not in PUBLIC_PAGES])
def test_every_page_redirects_anonymous_visitors_to_login(path):
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.django_db
def test_the_admin_requires_staff_login():
    response = Client().get("/admin/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_outsiders_get_404_for_every_object_of_a_project(project, dataset, api, oscar):
    feature_config = api.post(
        f"/api/projects/{project.id}/feature-configs/",
        {
            "name": "fc",
            "dataset_id": dataset["id"],
            "config": {
                "buyer_tower": {"features": [{"kind": "id", "column": "buyer_id", "embedding_dim": 8}]},
                "product_tower": {"features": [{"kind": "id", "column": "product_id", "embedding_dim": 8}]},
            },
        },
    ).json()
    model_config = api.post(
        f"/api/projects/{project.id}/model-configs/",
        {
            "name": "mc",
            "feature_config_id": feature_config["id"],
            "config": {"model_type": "retrieval"},
        },
    ).json()
    outsider = api_client_for(oscar)
    urls = [
        f"/api/projects/{project.id}/",
        f"/api/projects/{project.id}/datasets/",
        f"/api/projects/{project.id}/feature-configs/",
        f"/api/projects/{project.id}/model-configs/",
        f"/api/projects/{project.id}/uploads/",
        f"/api/projects/{project.id}/members/",
        f"/api/datasets/{dataset['id']}/",
        f"/api/datasets/{dataset['id']}/preview/",
        f"/api/feature-configs/{feature_config['id']}/",
        f"/api/model-configs/{model_config['id']}/",
    ]
    for url in urls:
        response = outsider.get(url)
        assert response.status_code == 404, url
        assert "error" in response.json()
    assert outsider.delete(f"/api/datasets/{dataset['id']}/").status_code == 404
    assert outsider.patch(f"/api/feature-configs/{feature_config['id']}/", {"name": "x"}).status_code == 404

    browser = Client()
    browser.force_login(oscar)
    for page in (
        f"/projects/{project.id}/",
        f"/datasets/{dataset['id']}/",
        f"/feature-configs/{feature_config['id']}/",
        f"/model-configs/{model_config['id']}/",
    ):
        assert browser.get(page).status_code == 404, page


def test_a_missing_object_answers_404_with_the_error_shape(api):
    response = api.get("/api/datasets/999999/")
    assert response.status_code == 404
    assert response.json() == {"error": "No such dataset"}


def test_the_session_api_enforces_csrf(project, olivia):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(olivia)
    assert browser.get("/api/projects/").status_code == 200
    without_token = browser.post("/api/projects/", json.dumps({"name": "new-one"}), content_type="application/json")
    assert without_token.status_code == 403
    browser.get("/")  # sets the csrftoken cookie, as the page does for its scripts
    token = browser.cookies["csrftoken"].value
    with_token = browser.post(
        "/api/projects/", json.dumps({"name": "new-one"}), content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert with_token.status_code == 201


def test_a_token_is_issued_from_a_session_only_and_shown_once(olivia):
    browser = Client()
    browser.force_login(olivia)
    issued = browser.post("/api/tokens/", json.dumps({"name": "laptop"}), content_type="application/json")
    assert issued.status_code == 201
    raw = issued.json()["token"]
    assert raw.startswith("mlp_")
    token_client = Client()
    listed = token_client.get("/api/tokens/", HTTP_AUTHORIZATION=f"Bearer {raw}").json()
    assert [t["name"] for t in listed] == ["laptop"] and "token" not in listed[0]
    # A token cannot mint more tokens.
    minted = token_client.post(
        "/api/tokens/", json.dumps({"name": "x"}), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert minted.status_code == 401
    revoked = token_client.delete(f"/api/tokens/{listed[0]['id']}/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert revoked.status_code == 204
    assert token_client.get("/api/tokens/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401


def test_the_openapi_docs_need_a_login(olivia):
    assert Client().get("/api/docs").status_code in (302, 401)
    browser = Client()
    browser.force_login(olivia)
    assert browser.get("/api/docs").status_code == 200
    assert browser.get("/api/openapi.json").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("authorization", [None, "Bearer mlp_revoked-or-never-issued"])
def test_a_write_without_a_login_answers_401_not_a_csrf_refusal(authorization):
    browser = Client(enforce_csrf_checks=True)  # as over HTTP: Django's test client skips CSRF otherwise
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = browser.post("/api/projects/", json.dumps({"name": "new-one"}), content_type="application/json", **extra)
    assert response.status_code == 401
    assert "Authentication required" in response.json()["error"]


def test_a_token_cannot_mint_tokens_over_http_either(olivia):
    _, raw = ApiToken.objects.issue(olivia, "laptop")
    response = Client(enforce_csrf_checks=True).post(
        "/api/tokens/", json.dumps({"name": "x"}), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert response.status_code == 401
