"""Feature configs in the user's own words: source column names the mapping gave a role, every mistake at once,
embedding widths from the vocabulary, and parameter counts with the dataset's real vocabularies."""

import csv

import pytest

from ml_pipeline.config.features import default_embedding_dim
from ml_platform.modeling.models import FeatureConfig
from tests.helpers import DROP_CANCELLATIONS, RETAIL_CSV, RETAIL_MAPPING, errors_by_field

# The purchases' mapping (tests/conftest.py): customer -> buyer_id, item -> product_id, ordered_at -> timestamp,
# qty -> target; segment and category keep their names.
IN_SOURCE_NAMES = {
    "buyer_tower": {
        "features": [
            {"kind": "id", "column": "customer", "embedding_dim": 8},
            {"kind": "categorical", "column": "segment", "embedding_dim": 4},
            {"kind": "timestamp", "column": "ordered_at"},
        ],
        "crosses": [{"columns": ["customer", "segment"], "hash_buckets": 20, "embedding_dim": 2}],
    },
    "product_tower": {"features": [{"kind": "id", "column": "item", "embedding_dim": 8}]},
    "target": {"column": "qty"},
}


def post(api, project, dataset, config, name="mine"):
    return api.post(
        f"/api/projects/{project.id}/feature-configs/", {"name": name, "dataset_id": dataset["id"], "config": config}
    )


def test_source_column_names_are_accepted_and_stored_as_their_roles(api, project, dataset):
    response = post(api, project, dataset, IN_SOURCE_NAMES)
    assert response.status_code == 201, response.content
    stored = FeatureConfig.objects.get(pk=response.json()["id"]).config
    assert [f["column"] for f in stored["buyer_tower"]["features"]] == ["buyer_id", "segment", "timestamp"]
    assert stored["buyer_tower"]["crosses"][0]["columns"] == ["buyer_id", "segment"]
    assert stored["product_tower"]["features"][0]["column"] == "product_id"
    assert stored["target"]["column"] == "target"
    assert response.json()["breakdown"]["buyer"]["features"][0]["name"] == "buyer_id"


def test_a_mistake_on_a_source_name_says_what_the_mapping_made_of_it(api, project, dataset):
    config = {
        **IN_SOURCE_NAMES,
        "product_tower": {
            "features": [{"kind": "id", "column": "item", "embedding_dim": 8}, {"kind": "id", "column": "customer"}]
        },
    }
    assert errors_by_field(post(api, project, dataset, config), 422) == {
        "config.product_tower.features[1].column": "'customer' is mapped as buyer_id: "
        "'buyer_id' belongs to the buyer tower"
    }


def test_every_mistake_of_both_towers_is_reported_at_once(api, project, dataset):
    config = {
        "buyer_tower": {"features": [{"kind": "categorical", "column": "segmnt", "embedding_dim": 4}]},
        "product_tower": {
            "features": [
                {"kind": "id", "column": "item", "embedding_dim": 8},
                {"kind": "numeric", "column": "category"},
            ]
        },
        "target": {"column": "quantity"},
    }
    assert errors_by_field(post(api, project, dataset, config), 422) == {
        "config.buyer_tower.features": "the buyer tower must include the 'buyer_id' column",
        "config.buyer_tower.features[0].column": "column 'segmnt' is not in the dataset (did you mean 'segment'?)",
        "config.product_tower.features[1].column": "column 'category' is string; a numeric feature needs float or int",
        "config.target.column": "column 'quantity' is not in the dataset",
    }


def test_embedding_dim_left_out_is_derived_from_the_datasets_vocabulary(api, project, dataset):
    config = {
        "buyer_tower": {"features": [{"kind": "id", "column": "buyer_id"}]},
        "product_tower": {"features": [{"kind": "id", "column": "product_id", "max_vocab_size": 2}]},
    }
    response = post(api, project, dataset, config)
    assert response.status_code == 201, response.content
    breakdown = response.json()["breakdown"]
    assert breakdown["buyer"]["features"][0]["dim"] == default_embedding_dim(3)  # 3 buyers in the preview
    assert breakdown["product"]["features"][0]["dim"] == default_embedding_dim(2)  # capped by max_vocab_size
    assert FeatureConfig.objects.get(pk=response.json()["id"]).config["buyer_tower"]["features"][0]["embedding_dim"]


# --------------------------------------------------------------------------- the real purchase log


@pytest.fixture
def retail(api, project):
    if not RETAIL_CSV.exists():
        pytest.skip(f"shared dataset absent: {RETAIL_CSV}")
    upload = api.upload(f"/api/projects/{project.id}/uploads/", RETAIL_CSV)
    response = api.post(
        f"/api/projects/{project.id}/datasets/",
        {
            "name": "retail",
            "source": {"kind": "upload", "upload_id": upload.json()["id"]},
            "mapping": {**RETAIL_MAPPING, "missing_ids": ["0"]},
            "filters": DROP_CANCELLATIONS,
        },
    )
    assert response.status_code == 201, response.content
    return response.json()


def distinct(column: str) -> int:
    """Distinct values of the kept rows, counted with the csv module."""
    with open(RETAIL_CSV, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if not r["InvoiceNo"].startswith("C") and r["CustomerID"] != "0.0"]
    return len({r[column].strip() for r in rows})


def test_parameter_counts_use_the_datasets_real_vocabularies_and_show_the_most_beside_them(api, project, retail):
    features = {
        "buyer_tower": {
            "features": [
                {"kind": "id", "column": "CustomerID", "embedding_dim": 32},
                {"kind": "categorical", "column": "Country", "embedding_dim": 8},
            ]
        },
        "product_tower": {"features": [{"kind": "id", "column": "StockCode", "embedding_dim": 32}]},
    }
    fc = post(api, project, retail, features, name="retail")
    assert fc.status_code == 201, fc.content
    response = api.post(
        f"/api/projects/{project.id}/model-configs/",
        {"name": "two towers", "feature_config_id": fc.json()["id"], "config": {"model_type": "retrieval"}},
    )
    assert response.status_code == 201, response.content
    tables = {e["name"]: e["rows"] for e in response.json()["parameter_counts"]["towers"]["buyer"]["embeddings"]}
    assert tables == {"buyer_id": distinct("CustomerID") + 1, "Country": distinct("Country") + 1}
    products = response.json()["parameter_counts"]["towers"]["product"]["embeddings"][0]
    assert products["rows"] == distinct("StockCode") + 1
    at_most = response.json()["parameter_counts_at_max_vocab"]
    assert at_most["towers"]["product"]["embeddings"][0]["rows"] == 100_001
    assert at_most["total"] > response.json()["parameter_counts"]["total"]
