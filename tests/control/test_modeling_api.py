"""Feature configs and model configs through the API: validation in context, breakdown, parameter counts."""

from tests.helpers import FEATURES, errors_by_field, feature_config_via_api


def test_it_returns_the_tensor_breakdown_with_the_feature_config(feature_config):
    assert feature_config["breakdown"]["buyer"]["total"] == 16 + 4 + 2 + 2
    assert feature_config["breakdown"]["product"] == {
        "features": [
            {"name": "product_id", "kind": "id", "dim": 16},
            {"name": "category", "kind": "categorical", "dim": 4},
        ],
        "total": 20,
    }


def test_a_feature_on_a_column_missing_from_the_dataset_is_named(api, project, dataset):
    config = {
        **FEATURES,
        "product_tower": {
            "features": [
                {"kind": "id", "column": "product_id", "embedding_dim": 8},
                {"kind": "categorical", "column": "brand", "embedding_dim": 4},
            ]
        },
    }
    response = api.post(
        f"/api/projects/{project.id}/feature-configs/", {"name": "x", "dataset_id": dataset["id"], "config": config}
    )
    assert response.status_code == 422
    assert errors_by_field(response) == {
        "config.product_tower.features[1].column": "column 'brand' is not in the dataset"
    }


def test_a_feature_kind_must_suit_the_column_type(api, project, dataset):
    config = {
        **FEATURES,
        "product_tower": {
            "features": [
                {"kind": "id", "column": "product_id", "embedding_dim": 8},
                {"kind": "numeric", "column": "category"},
            ]
        },
    }
    response = api.post(
        f"/api/projects/{project.id}/feature-configs/", {"name": "x", "dataset_id": dataset["id"], "config": config}
    )
    assert errors_by_field(response) == {
        "config.product_tower.features[1].column": "column 'category' is string; a numeric feature needs float or int"
    }


def test_shape_errors_carry_the_config_prefix(api, project, dataset):
    config = {**FEATURES, "buyer_tower": {"features": [{"kind": "id", "column": "buyer_id", "embedding_dim": -1}]}}
    response = api.post(
        f"/api/projects/{project.id}/feature-configs/", {"name": "x", "dataset_id": dataset["id"], "config": config}
    )
    assert errors_by_field(response) == {
        "config.buyer_tower.features[0].embedding_dim": "Input should be greater than or equal to 1"
    }


def test_the_dataset_must_belong_to_the_project(api, project, oscars_project):
    response = api.post(
        f"/api/projects/{project.id}/feature-configs/", {"name": "x", "dataset_id": 987654, "config": FEATURES}
    )
    assert errors_by_field(response) == {"dataset_id": "no dataset 987654 in this project"}


def test_updating_a_feature_config_revalidates_and_recomputes(api, feature_config):
    config = {**FEATURES, "product_tower": {"features": [{"kind": "id", "column": "product_id", "embedding_dim": 64}]}}
    response = api.patch(f"/api/feature-configs/{feature_config['id']}/", {"config": config})
    assert response.status_code == 200, response.content
    assert response.json()["breakdown"]["product"]["total"] == 64


def test_a_model_config_paired_with_a_feature_config_reports_parameter_counts(api, project, feature_config):
    response = api.post(
        f"/api/projects/{project.id}/model-configs/",
        {
            "name": "ranker",
            "feature_config_id": feature_config["id"],
            "config": {
                "model_type": "ranking",
                "buyer_tower": [{"type": "dense", "units": 10}],
                "output_dim": 4,
                "rating_head": [{"type": "dense", "units": 3}],
            },
        },
    )
    assert response.status_code == 201, response.content
    counts = response.json()["parameter_counts"]
    buyer_input = 24  # 16 + 4 + 2 + 2
    assert counts["towers"]["buyer"]["input_dim"] == buyer_input
    # Vocabularies as the previewed dataset has them (3 buyers, 2 segments; one OOV row each), not max_vocab_size.
    assert counts["towers"]["buyer"]["embedding_params"] == 4 * 16 + 3 * 4 + 50 * 2
    at_most = response.json()["parameter_counts_at_max_vocab"]
    assert at_most["towers"]["buyer"]["embedding_params"] == 101 * 16 + 11 * 4 + 50 * 2
    assert counts["towers"]["buyer"]["dense_params"] == (24 * 10 + 10) + (10 * 4 + 4)
    assert counts["towers"]["product"]["dense_params"] == 20 * 4 + 4
    head_input = counts["rating_head"]["input_dim"]  # built from the two 4-wide embeddings
    assert counts["rating_head"]["total"] == (head_input * 3 + 3) + (3 + 1)
    assert response.json()["model_type"] == "ranking"


def test_a_model_config_without_a_pairing_has_no_counts_until_asked(api, project, feature_config):
    created = api.post(
        f"/api/projects/{project.id}/model-configs/", {"name": "plain", "config": {"model_type": "retrieval"}}
    ).json()
    assert created["parameter_counts"] is None
    paired = api.get(f"/api/model-configs/{created['id']}/?feature_config_id={feature_config['id']}").json()
    layers = paired["parameter_counts"]["towers"]["product"]["layers"]
    assert {"layer": "output 32", "input": 20, "output": 32, "params": 20 * 32 + 32} in layers


def test_a_ranking_model_cannot_pair_with_features_that_lack_a_target(api, project, dataset):
    no_target = {k: v for k, v in FEATURES.items() if k != "target"}
    fc = feature_config_via_api(api, project, "no-target", no_target, dataset)
    response = api.post(
        f"/api/projects/{project.id}/model-configs/",
        {"name": "r", "feature_config_id": fc["id"], "config": {"model_type": "ranking"}},
    )
    assert response.status_code == 422
    assert errors_by_field(response) == {
        "feature_config.target": "a ranking model needs a target column in the feature config"
    }


def test_model_config_errors_name_the_field(api, project):
    response = api.post(
        f"/api/projects/{project.id}/model-configs/",
        {
            "name": "bad",
            "config": {"model_type": "retrieval", "retrieval_k": [10, 10], "buyer_tower": [{"type": "dense"}]},
        },
    )
    assert response.status_code == 422
    assert errors_by_field(response) == {
        "config.retrieval_k": "each K may appear once",
        "config.buyer_tower[0].units": "Field required",
    }


def test_model_configs_filter_by_type(api, project):
    for name, kind in (("a", "retrieval"), ("b", "ranking"), ("c", "multitask")):
        assert (
            api.post(
                f"/api/projects/{project.id}/model-configs/", {"name": name, "config": {"model_type": kind}}
            ).status_code
            == 201
        )
    listed = api.get(f"/api/projects/{project.id}/model-configs/?model_type=ranking").json()
    assert [m["name"] for m in listed] == ["b"]


def test_a_dataset_in_use_by_a_feature_config_cannot_be_deleted(api, dataset, feature_config):
    response = api.delete(f"/api/datasets/{dataset['id']}/")
    assert response.status_code == 409
    assert "feature config" in response.json()["error"]
