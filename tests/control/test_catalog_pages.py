"""The catalog's editing pages, without a browser: who may open them, and that previews and refusals write nothing.

The pages' behaviour in a browser is in tests/browser/catalog/; here each page and endpoint is asked directly.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ml_platform.accounts.models import ApiToken
from ml_platform.audit.models import AuditEvent
from ml_platform.datasets.models import Dataset, Upload
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from tests import helpers

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def browser_of(username: str) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    return client


@pytest.fixture
def model(api, project, feature_config):
    return helpers.model_config(api, project, "two-tower", {"model_type": "retrieval"}, feature_config)


@pytest.fixture
def upload(api, project, purchases_csv):
    return api.upload(f"/api/projects/{project.id}/uploads/", purchases_csv).json()


def form_of(dataset: dict, **changes) -> dict:
    """The new dataset form as a browser posts it, for the purchases file."""
    form = {
        "name": dataset["name"],
        "source.kind": "file",
        "source:file.path": dataset["source"]["path"],
        "mapping.buyer_id": "customer",
        "mapping.product_id": "item",
        "mapping.timestamp": "ordered_at",
    }
    return {**form, **changes}


def pages_of(project, dataset, feature_config, model, upload) -> list[tuple[str, str]]:
    p, d, f, m = project.id, dataset["id"], feature_config["id"], model["id"]
    return [
        ("get", f"/projects/{p}/datasets/new/"),
        ("get", f"/datasets/{d}/edit/"),
        ("post", f"/datasets/{d}/delete/"),
        ("post", f"/projects/{p}/datasets/live/"),
        ("post", f"/projects/{p}/uploads/new/"),
        ("post", f"/uploads/{upload['id']}/delete/"),
        ("get", f"/projects/{p}/feature-configs/new/"),
        ("get", f"/feature-configs/{f}/edit/"),
        ("post", f"/feature-configs/{f}/delete/"),
        ("post", f"/projects/{p}/feature-configs/live/"),
        ("get", f"/projects/{p}/model-configs/new/"),
        ("get", f"/model-configs/{m}/edit/"),
        ("post", f"/model-configs/{m}/delete/"),
        ("post", f"/projects/{p}/model-configs/live/"),
    ]


def test_an_outsider_gets_404_from_every_editing_page_and_nothing_changes(
    oscar, project, dataset, feature_config, model, upload
):
    browser = browser_of("oscar")
    events = AuditEvent.objects.count()
    for method, url in pages_of(project, dataset, feature_config, model, upload):
        assert getattr(browser, method)(url).status_code == 404, url
    assert (Dataset.objects.count(), FeatureConfig.objects.count(), ModelConfig.objects.count()) == (1, 1, 1)
    assert Upload.objects.count() == 1 and AuditEvent.objects.count() == events


def test_without_logging_in_every_editing_page_sends_to_the_login_page(project, dataset, feature_config, model, upload):
    for method, url in [*pages_of(project, dataset, feature_config, model, upload), ("get", "/tokens/")]:
        answer = getattr(Client(), method)(url)
        assert answer.status_code == 302 and answer["Location"].startswith("/login/"), url


def test_a_copy_can_only_start_from_the_projects_own_dataset(oscar, oscars_project, olivia, dataset):
    answer = browser_of("oscar").get(f"/projects/{oscars_project.id}/datasets/new/?from={dataset['id']}")
    assert answer.status_code == 404


def test_the_live_preview_answers_the_counts_and_writes_nothing(olivia, project, dataset):
    events = AuditEvent.objects.count()
    answer = browser_of("olivia").post(
        f"/projects/{project.id}/datasets/live/", form_of(dataset, name="another"), headers=HTMX
    )
    assert answer.status_code == 200
    html = answer.content.decode()
    assert 'data-live-kpi="rows">6<' in html and "<html" not in html
    assert list(Dataset.objects.values_list("name", flat=True)) == ["purchases"]
    assert AuditEvent.objects.count() == events


def test_a_refused_save_writes_nothing_and_names_the_field(olivia, project, dataset):
    events = AuditEvent.objects.count()
    form = form_of(
        dataset,
        name="with-bad-filter",
        **{"filters.conditions[0].column": "qty", "filters.conditions[0].op": "gt", "filters.conditions[0].value": "x"},
    )
    answer = browser_of("olivia").post(f"/projects/{project.id}/datasets/new/", form)
    assert answer.status_code == 200
    assert 'data-errors-for="filters.conditions[0].value"' in answer.content.decode()
    assert not Dataset.objects.filter(name="with-bad-filter").exists()
    assert AuditEvent.objects.count() == events


def test_a_dataset_saved_through_the_page_is_audited_as_through_the_api(olivia, project, dataset):
    answer = browser_of("olivia").post(f"/projects/{project.id}/datasets/new/", form_of(dataset, name="again"))
    created = Dataset.objects.get(name="again")
    assert answer.status_code == 302 and answer["Location"] == f"/datasets/{created.id}/"
    event = AuditEvent.objects.get(object_id=created.id, action="create")
    assert event.changes["mapping"]["buyer_id"] == "customer"


def test_a_user_cannot_revoke_another_users_token(olivia, oscar):
    token, _ = ApiToken.objects.issue(oscar, "oscars")
    answer = browser_of("olivia").post("/tokens/", {"revoke": str(token.id)})
    assert answer.status_code == 404
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_configs_are_deleted_through_their_pages_and_audited(olivia, project, feature_config, model):
    browser = browser_of("olivia")
    answer = browser.post(f"/model-configs/{model['id']}/delete/")
    assert answer.status_code == 302 and answer["Location"] == f"/projects/{project.id}/"
    answer = browser.post(f"/feature-configs/{feature_config['id']}/delete/")
    assert answer.status_code == 302
    assert not ModelConfig.objects.exists() and not FeatureConfig.objects.exists()
    deleted = AuditEvent.objects.filter(action="delete").values_list("object_id", flat=True)
    assert sorted(deleted) == sorted([model["id"], feature_config["id"]])


def test_a_dataset_in_use_is_not_deleted_through_its_page(olivia, dataset, feature_config):
    answer = browser_of("olivia").post(f"/datasets/{dataset['id']}/delete/", follow=True)
    assert "Still in use by feature config &#x27;standard&#x27;" in answer.content.decode()
    assert Dataset.objects.filter(pk=dataset["id"]).exists()
    assert not AuditEvent.objects.filter(action="delete").exists()


def test_the_api_deletes_an_unused_upload_and_refuses_one_a_dataset_reads(
    api, project, upload, purchases_mapping, oscar
):
    created = api.post(
        f"/api/projects/{project.id}/datasets/",
        {"name": "uploaded", "source": {"kind": "upload", "upload_id": upload["id"]}, "mapping": purchases_mapping},
    )
    assert created.status_code == 201, created.content
    refused = api.delete(f"/api/uploads/{upload['id']}/")
    assert refused.status_code == 409 and "uploaded" in refused.json()["error"]
    assert helpers.api_client_for(oscar).delete(f"/api/uploads/{upload['id']}/").status_code == 404

    api.delete(f"/api/datasets/{created.json()['id']}/")
    assert api.delete(f"/api/uploads/{upload['id']}/").status_code == 204
    assert not Upload.objects.exists()
    assert AuditEvent.objects.filter(action="delete", object_type="datasets.upload", object_id=upload["id"]).exists()


def live_forms(project, dataset, feature_config, model) -> dict[str, tuple[str, dict]]:
    """Each live panel's endpoint and a form as an edit page posts it."""
    tower = {"kind": "id", "embedding_dim": "8"}
    features = {
        f"config.{name}_tower.features[0].{key}": value
        for name, column in (("buyer", "buyer_id"), ("product", "product_id"))
        for key, value in {**tower, "column": column}.items()
    }
    layers = {
        f"config.{name}[0].{key}": v
        for name in ("buyer_tower", "product_tower")
        for key, v in (("type", "dense"), ("units", "16"))
    }
    return {
        "dataset": (
            f"/projects/{project.id}/datasets/live/",
            {**form_of(dataset, name="renamed"), "_dataset": str(dataset["id"])},
        ),
        "feature config": (
            f"/projects/{project.id}/feature-configs/live/",
            {"name": "renamed", "dataset_id": str(dataset["id"]), "_instance": str(feature_config["id"]), **features},
        ),
        "model config": (
            f"/projects/{project.id}/model-configs/live/",
            {
                "name": "renamed",
                "feature_config_id": str(feature_config["id"]),
                "config.model_type": "retrieval",
                "_instance": str(model["id"]),
                **layers,
            },
        ),
    }


WRITES = ("INSERT", "UPDATE", "DELETE", "SAVEPOINT", "BEGIN")


@pytest.mark.parametrize("panel", ["dataset", "feature config", "model config"])
def test_a_live_panel_computes_its_answer_without_writing_or_taking_the_write_lock(
    olivia, project, dataset, feature_config, model, panel
):
    """No write and no transaction: on SQLite a rolled-back save would hold the database's write lock for
    the whole preview."""
    url, form = live_forms(project, dataset, feature_config, model)[panel]
    browser = browser_of("olivia")
    with CaptureQueriesContext(connection) as queries:
        answer = browser.post(url, form, headers=HTMX)
    assert answer.status_code == 200
    assert "live-errors" not in answer.content.decode(), answer.content.decode()
    written = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(WRITES)]
    assert written == []
    assert "renamed" not in {d.name for d in Dataset.objects.all()} | {c.name for c in FeatureConfig.objects.all()}


def test_the_model_page_saves_weight_averaging_and_shows_it_when_editing(olivia, project, feature_config):
    browser = browser_of("olivia")
    form = {
        "name": "averaged",
        "feature_config_id": str(feature_config["id"]),
        "config.model_type": "retrieval",
        "config.weight_averaging": "true",
        "config.weight_averaging_momentum": "0.99",
    }
    answer = browser.post(f"/projects/{project.id}/model-configs/new/", form)
    assert answer.status_code == 302, answer.content.decode()[-2000:]
    saved = ModelConfig.objects.get(project=project, name="averaged")
    assert (saved.config["weight_averaging"], saved.config["weight_averaging_momentum"]) == (True, 0.99)
    page = browser.get(f"/model-configs/{saved.id}/edit/").content.decode()
    assert '<option value="true" selected>on</option>' in page
    assert 'name="config.weight_averaging_momentum" inputmode="decimal" value="0.99"' in page
