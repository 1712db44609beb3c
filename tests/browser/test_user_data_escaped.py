"""What comes from a user's data is text on every page, never markup: an uploaded CSV whose column is named
like an HTML element with a script in it shows that name as text, and no script runs."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.helpers import PURCHASE_COLUMNS, feature_config_via_api

pytestmark = pytest.mark.browser

COLUMN = "<img src=x onerror=alert(1)>"
CSV = f"""order_id,customer,item,ordered_at,qty,"{COLUMN}"
1,c1,p1,2025-01-01 10:00:00,2,retail
2,c1,p2,2025-01-02 11:00:00,1,retail
3,c2,p1,2025-01-03 12:00:00,5,wholesale
"""


@pytest.fixture
def hostile_dataset(api, project, data_dir):
    path = data_dir / "hostile.csv"
    path.write_text(CSV)
    upload = api.upload(f"/api/projects/{project.id}/uploads/", path)
    assert upload.status_code == 201, upload.content
    assert COLUMN in [c["name"] for c in upload.json()["columns"]]
    mapping = {**PURCHASE_COLUMNS, "buyer_features": [{"column": COLUMN}]}
    dataset = api.post(
        f"/api/projects/{project.id}/datasets/",
        {"name": "hostile", "source": {"kind": "upload", "upload_id": upload.json()["id"]}, "mapping": mapping},
    )
    assert dataset.status_code == 201, dataset.content
    return dataset.json()


@pytest.fixture
def hostile_feature_config(api, project, hostile_dataset):
    config = {
        "buyer_tower": {
            "features": [
                {"kind": "id", "column": "buyer_id", "embedding_dim": 8, "max_vocab_size": 10},
                {"kind": "categorical", "column": COLUMN, "embedding_dim": 4, "max_vocab_size": 10},
            ]
        },
        "product_tower": {
            "features": [{"kind": "id", "column": "product_id", "embedding_dim": 8, "max_vocab_size": 10}]
        },
    }
    return feature_config_via_api(api, project, "hostile-features", config, hostile_dataset)


@pytest.fixture
def dialogs(page) -> list[str]:
    """The messages of every alert(), confirm() or prompt() a page opens (none may)."""
    opened: list[str] = []
    page.on("dialog", lambda dialog: (opened.append(dialog.message), dialog.dismiss()))
    return opened


def assert_no_markup_from_the_data(page, dialogs):
    expect(page.locator("main img")).to_have_count(0)
    assert dialogs == []


def test_the_dataset_page_shows_a_hostile_column_name_as_text(logged_in_page, olivia, hostile_dataset, dialogs):
    page = logged_in_page(olivia)
    page.goto(f"/datasets/{hostile_dataset['id']}/")

    expect(page.locator("#preview-sample thead th").last).to_have_text(f"{COLUMN} (varchar)")
    expect(page.locator("#preview-sample tbody tr").first).to_contain_text("retail")
    expect(page.locator("#dataset-mapping")).to_contain_text(f'"column": "{COLUMN}"')
    assert_no_markup_from_the_data(page, dialogs)

    page.click("#refresh-preview")  # the fragment htmx swaps in is escaped too
    expect(page.locator("#refresh-preview")).to_be_enabled()
    expect(page.locator("#preview-sample thead th").last).to_have_text(f"{COLUMN} (varchar)")
    assert_no_markup_from_the_data(page, dialogs)


def test_the_feature_config_page_shows_a_hostile_feature_name_as_text(
    logged_in_page, olivia, hostile_feature_config, dialogs
):
    page = logged_in_page(olivia)
    page.goto(f"/feature-configs/{hostile_feature_config['id']}/")

    legend = page.locator('.legend[data-legend="buyer"] li')
    expect(legend).to_have_count(2)
    expect(legend.nth(1)).to_have_text(f"{COLUMN} 4D categorical")
    slice_ = page.locator('.tensor-bar[data-tower="buyer"] .slice').nth(1)
    expect(slice_).to_have_attribute("title", f"{COLUMN} (categorical): 4D")
    assert_no_markup_from_the_data(page, dialogs)
