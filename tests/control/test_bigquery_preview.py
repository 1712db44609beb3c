"""A BigQuery dataset's preview: on a platform on Google Cloud (CLOUD_PROJECT_ID set), saving it dry-runs
the counting query and shows the bytes it would scan first; an explicit refresh runs COUNT /
APPROX_COUNT_DISTINCT. BigQuery cannot be reached from here: the client is a fake that records calls."""

from datetime import datetime

import pytest
from django.test import Client
from google.cloud.bigquery.table import Row

from ml_pipeline.data import bigquery
from tests.bigquery_fake import FakeBigQuery

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}

DATASET = {
    "name": "warehouse",
    "source": {"kind": "bigquery", "project": "my-project", "table": "shop.orders"},
    "mapping": {"buyer_id": "customer", "product_id": "item", "timestamp": "ordered_at"},
}
COUNTS = Row(
    (5000, 12, 0, 3, 4985, 310, 95, datetime(2025, 1, 1), datetime(2025, 7, 1), 310, 95),
    {f"f{i}": i for i in range(11)},
)
SAMPLE = Row(("c001", "p001", datetime(2025, 1, 1)), {"buyer_id": 0, "product_id": 1, "timestamp": 2})


@pytest.fixture
def fake(settings, monkeypatch):
    settings.CLOUD_PROJECT_ID = "my-project"
    client = FakeBigQuery(answers={"APPROX_COUNT_DISTINCT": [COUNTS], "LIMIT 10": [SAMPLE]})
    monkeypatch.setattr(bigquery, "make_client", lambda source: client)
    return client


def test_saving_a_bigquery_dataset_shows_the_bytes_its_preview_would_scan_and_runs_nothing(api, project, fake):
    created = api.post(f"/api/projects/{project.id}/datasets/", DATASET)

    assert created.status_code == 201, created.content
    assert created.json()["preview"] is None
    assert created.json()["preview_error"] == "The preview scans 3.34 MB in BigQuery: refresh the preview to run it"
    assert fake.calls and all(call.dry_run for call in fake.calls)


def test_a_refresh_runs_the_counts_with_approximate_distinct_values(api, project, fake):
    dataset = api.post(f"/api/projects/{project.id}/datasets/", DATASET).json()
    fake.calls.clear()

    answer = api.post(f"/api/datasets/{dataset['id']}/preview/", {})

    assert answer.status_code == 200, answer.content
    preview = answer.json()["preview"]
    assert (preview["rows"], preview["buyers"], preview["products"]) == (4985, 310, 95)
    assert preview["bytes_estimate"] == {"bytes": 3_500_000, "summary": "The preview scans 3.34 MB in BigQuery"}
    assert preview["approximate"] == ["buyers", "products", "distinct"]
    assert preview["summary"] == "4.99K rows | ~310 users | ~95 products | 6 months"
    assert [d["reason"] for d in preview["dropped"]] == ["no_buyer_id", "no_timestamp"]
    dry, counting = [c for c in fake.calls if "APPROX_COUNT_DISTINCT" in c.sql]
    assert dry.dry_run and not counting.dry_run and dry.sql == counting.sql


def test_without_google_cloud_a_bigquery_dataset_is_stored_unread(api, project, settings, monkeypatch):
    settings.CLOUD_PROJECT_ID = ""
    monkeypatch.setattr(bigquery, "make_client", lambda source: pytest.fail("BigQuery was called"))
    dataset = api.post(f"/api/projects/{project.id}/datasets/", DATASET).json()
    refreshed = api.post(f"/api/datasets/{dataset['id']}/preview/", {}).json()
    assert refreshed["preview"] is None and "previewed on Google Cloud" in refreshed["error"]


def test_the_page_shows_the_estimate_first_and_after_a_refresh_what_was_scanned(api, project, olivia, fake):
    dataset = api.post(f"/api/projects/{project.id}/datasets/", DATASET).json()
    browser = Client()
    browser.force_login(olivia)

    card = browser.get(f"/datasets/{dataset['id']}/preview/", headers=HTMX).content.decode()
    assert "The preview scans 3.34 MB in BigQuery: refresh the preview to run it" in card
    assert "preview-failed" not in card and "could not be read" not in card

    card = browser.post(f"/datasets/{dataset['id']}/preview/", headers=HTMX).content.decode()
    assert '<dd data-kpi="rows">4,985</dd>' in card
    assert "The preview scans 3.34 MB in BigQuery; users, products and distinct values are approximate" in card
