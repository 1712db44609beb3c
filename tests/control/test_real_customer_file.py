"""A real B2B purchase log (UCI Online Retail extract) imported as a customer would bring it."""

import csv
from datetime import datetime

import pytest

from tests.helpers import DROP_CANCELLATIONS, RETAIL_CSV, RETAIL_MAPPING

pytestmark = pytest.mark.skipif(not RETAIL_CSV.exists(), reason=f"shared dataset folder absent: {RETAIL_CSV}")


def expected_counts() -> dict:
    """The same numbers computed the slow, obvious way with the csv module."""
    with open(RETAIL_CSV, newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = [r for r in rows if not r["InvoiceNo"].startswith("C") and r["CustomerID"].strip()]
    dates = [datetime.fromisoformat(r["InvoiceDate"]) for r in kept]
    return {
        "source_rows": len(rows),
        "rows": len(kept),
        "buyers": len({str(int(float(r["CustomerID"]))) for r in kept}),
        "products": len({r["StockCode"].strip() for r in kept}),
        "first_timestamp": min(dates).isoformat(),
        "last_timestamp": max(dates).isoformat(),
        "cancellations": sum(r["InvoiceNo"].startswith("C") for r in rows),
    }


def test_it_imports_the_real_purchase_log_and_previews_the_right_counts(api, project):
    upload = api.upload(f"/api/projects/{project.id}/uploads/", RETAIL_CSV)
    assert upload.status_code == 201, upload.content
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {
            "name": "online retail",
            "source": {"kind": "upload", "upload_id": upload.json()["id"]},
            "mapping": RETAIL_MAPPING,
            "filters": DROP_CANCELLATIONS,
        },
    )
    assert response.status_code == 201, response.content
    preview = response.json()["preview"]
    expected = expected_counts()
    assert expected["cancellations"] > 0  # the filter has something to drop
    for key in ("source_rows", "rows", "buyers", "products", "first_timestamp", "last_timestamp"):
        assert preview[key] == expected[key], key
    # Float customer ids ("17850.0") come out as clean ids; quantities are positive once cancellations go.
    assert all("." not in row["buyer_id"] for row in preview["sample"])
    assert all(row["target"] > 0 for row in preview["sample"])
    assert all(row["Description"] == row["Description"].strip() for row in preview["sample"])


def test_without_the_filter_the_cancellations_are_counted(api, project):
    upload = api.upload(f"/api/projects/{project.id}/uploads/", RETAIL_CSV)
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {
            "name": "online retail (all)",
            "source": {"kind": "upload", "upload_id": upload.json()["id"]},
            "mapping": RETAIL_MAPPING,
        },
    )
    expected = expected_counts()
    assert response.json()["preview"]["rows"] > expected["rows"]
