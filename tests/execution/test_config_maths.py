"""Tensor breakdown and parameter counts, against values computed by hand and by Keras itself."""

import pytest

from ml_pipeline.config import FeatureConfig, ModelConfig, parameter_counts, tensor_breakdown
from ml_pipeline.config.features import default_embedding_dim
from ml_pipeline.errors import ConfigError, validate_model

FEATURES = {
    "buyer_tower": {
        "features": [
            {"kind": "id", "column": "buyer_id", "embedding_dim": 32, "max_vocab_size": 1000},
            {"kind": "categorical", "column": "city", "embedding_dim": 8, "max_vocab_size": 50, "oov_buckets": 2},
            {"kind": "timestamp", "column": "ts", "periods": ["hour_of_day", "day_of_week", "month_of_year"]},
        ],
        "crosses": [{"columns": ["buyer_id", "city"], "hash_buckets": 100, "embedding_dim": 4}],
    },
    "product_tower": {
        "features": [
            {"kind": "id", "column": "product_id", "embedding_dim": 16, "max_vocab_size": 500},
            {"kind": "numeric", "column": "price"},
            {"kind": "numeric", "column": "weight", "transform": "bucketize", "buckets": 10, "embedding_dim": 4},
            {"kind": "text", "column": "title", "embedding_dim": 8, "max_vocab_size": 1000},
            {"kind": "timestamp", "column": "launched", "transform": "bucketize", "buckets": 24, "embedding_dim": 2},
        ]
    },
    "target": {"column": "target", "transforms": [{"op": "log1p"}]},
}

MODEL = {
    "model_type": "multitask",
    "buyer_tower": [
        {"type": "dense", "units": 64},
        {"type": "batch_norm"},
        {"type": "dropout", "rate": 0.2},
        {"type": "dense", "units": 32},
    ],
    "product_tower": [{"type": "dense", "units": 16}],
    "output_dim": 8,
    "rating_head": [{"type": "dense", "units": 10}],
}


def test_it_breaks_each_tower_into_slices_in_concatenation_order():
    breakdown = tensor_breakdown(FeatureConfig.model_validate(FEATURES))
    assert breakdown["buyer"] == {
        "features": [
            {"name": "buyer_id", "kind": "id", "dim": 32},
            {"name": "city", "kind": "categorical", "dim": 8},
            {"name": "ts", "kind": "timestamp", "dim": 6},  # sin + cos for three periods
            {"name": "buyer_id x city", "kind": "cross", "dim": 4},
        ],
        "total": 50,
    }
    assert [s["dim"] for s in breakdown["product"]["features"]] == [16, 1, 4, 8, 2]
    assert breakdown["product"]["total"] == 31


def test_it_counts_parameters_by_hand():
    counts = parameter_counts(ModelConfig.model_validate(MODEL), FeatureConfig.model_validate(FEATURES))
    buyer = counts["towers"]["buyer"]
    # Embeddings: (1000+1)*32 + (50+2)*8 + 100*4 (cross); cyclical time has no table.
    assert buyer["embedding_params"] == 32032 + 416 + 400
    # Dense: 50*64+64, batch norm 4*64 (half trainable), 64*32+32, projection 32*8+8.
    assert [layer["params"] for layer in buyer["layers"]] == [3264, 256, 0, 2080, 264]
    assert buyer["trainable"] == 32848 + 3264 + 128 + 2080 + 264
    assert buyer["non_trainable"] == 128
    assert buyer["total"] == 38712

    product = counts["towers"]["product"]
    # (500+1)*16 + 10*4 (buckets) + (1000+1)*8 (text) + 24*2 (time buckets); normalize has none.
    assert product["embedding_params"] == 8016 + 40 + 8008 + 48
    assert product["input_dim"] == 31
    assert product["total"] == 16112 + (31 * 16 + 16) + (16 * 8 + 8)

    # Rating head reads both embeddings and their product (3*8): 24*10+10, then the single output unit 10+1.
    assert counts["rating_head"]["total"] == 250 + 11
    assert counts["total"] == 38712 + 16760 + 261


def test_dense_counts_match_what_keras_reports():
    keras = pytest.importorskip("keras")
    counts = parameter_counts(ModelConfig.model_validate(MODEL), FeatureConfig.model_validate(FEATURES))
    tower = keras.Sequential(
        [
            keras.Input((50,)),
            keras.layers.Dense(64),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(32),
            keras.layers.Dense(8),
        ]
    )
    assert counts["towers"]["buyer"]["dense_params"] == tower.count_params()
    embedding = keras.layers.Embedding(1001, 32)
    embedding.build((None,))
    assert counts["towers"]["buyer"]["embeddings"][0]["params"] == embedding.count_params()


def test_a_retrieval_model_has_no_rating_head_count():
    model = ModelConfig.model_validate({"model_type": "retrieval"})
    counts = parameter_counts(model, FeatureConfig.model_validate(FEATURES))
    assert "rating_head" not in counts
    # No hidden layers: each tower is just its projection to output_dim (default 32).
    assert counts["towers"]["buyer"]["layers"] == [
        {"layer": "output 32", "input": 50, "output": 32, "params": 50 * 32 + 32}
    ]


def problems(model_cls, data) -> dict:
    with pytest.raises(ConfigError) as caught:
        validate_model(model_cls, data)
    return {p.field: p.message for p in caught.value.problems}


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"retrieval_k": [5, 5]}, "retrieval_k", "each K may appear once"),
        ({"retrieval_k": [0, 10]}, "retrieval_k", "each K must be between 1 and 1000"),
        ({"retrieval_k": []}, "retrieval_k", "give at least one K"),
        ({"output_dim": 0}, "output_dim", "Input should be greater than or equal to 1"),
        ({"learning_rate": 0}, "learning_rate", "Input should be greater than 0"),
        ({"optimizer": "rmsprop"}, "optimizer", "Input should be 'adagrad', 'adam' or 'sgd'"),
        (
            {"buyer_tower": [{"type": "dense", "units": 0}]},
            "buyer_tower[0].units",
            "Input should be greater than or equal to 1",
        ),
        ({"buyer_tower": [{"type": "dropout", "rate": 1.5}]}, "buyer_tower[0].rate", "Input should be less than 1"),
        (
            {"buyer_tower": [{"type": "conv"}]},
            "buyer_tower[0].type",
            "Input tag 'conv' found using 'type' does not match any of the expected tags: 'dense', 'dropout', 'batch_norm'",
        ),
        (
            {"product_tower": [{"type": "dense", "units": 8}, {"type": "batch_norm"}, {"type": "batch_norm"}]},
            "product_tower[2]",
            "two batch_norm layers in a row",
        ),
        (
            {"rating_head": [{"type": "dense", "units": 8}]},
            "rating_head",
            "only ranking and multitask models have a rating head",
        ),
        ({"loss_weights": {"retrieval": 1, "rating": 1}}, "loss_weights", "only multitask models combine losses"),
        (
            {"buyer_tower": [{"type": "dense", "units": 8, "activation": "softmaxx"}]},
            "buyer_tower[0].activation",
            "Input should be 'relu', 'gelu', 'selu', 'swish', 'tanh', 'sigmoid' or 'linear'",
        ),
        ({"surprise": 1}, "surprise", "Extra inputs are not permitted"),
    ],
)
def test_each_model_rule_names_its_field(change, field, message):
    assert problems(ModelConfig, {"model_type": "retrieval", **change}) == {field: message}


def test_multitask_loss_weights_cannot_both_be_zero():
    assert problems(ModelConfig, {"model_type": "multitask", "loss_weights": {"retrieval": 0, "rating": 0}}) == {
        "loss_weights.retrieval": "at least one loss weight must be positive"
    }


def test_multitask_gets_explicit_default_loss_weights():
    model = ModelConfig.model_validate({"model_type": "multitask"})
    assert model.loss_weights.retrieval == 1.0 and model.loss_weights.rating == 1.0


def with_buyer_features(*features, crosses=()):
    return {**FEATURES, "buyer_tower": {"features": list(features), "crosses": list(crosses)}}


BUYER_ID = {"kind": "id", "column": "buyer_id", "embedding_dim": 8}


@pytest.mark.parametrize(
    "config, field, message",
    [
        (
            with_buyer_features(BUYER_ID, {**BUYER_ID, "embedding_dim": 4}),
            "buyer_tower.features[1].column",
            "'buyer_id' is used twice in this tower",
        ),
        (
            with_buyer_features(
                BUYER_ID, crosses=[{"columns": ["buyer_id", "city"], "hash_buckets": 10, "embedding_dim": 2}]
            ),
            "buyer_tower.crosses[0].columns",
            "'city' is not a feature of this tower",
        ),
        (
            with_buyer_features(
                BUYER_ID,
                {"kind": "text", "column": "bio", "embedding_dim": 4},
                crosses=[{"columns": ["buyer_id", "bio"], "hash_buckets": 10, "embedding_dim": 2}],
            ),
            "buyer_tower.crosses[0].columns",
            "a text feature cannot be crossed",
        ),
        (
            with_buyer_features(BUYER_ID, {"kind": "numeric", "column": "age", "transform": "bucketize"}),
            "buyer_tower.features[1].buckets",
            "required when transform is 'bucketize'",
        ),
        (
            with_buyer_features(BUYER_ID, {"kind": "numeric", "column": "age", "buckets": 4}),
            "buyer_tower.features[1].transform",
            "buckets and embedding_dim only apply to 'bucketize'",
        ),
        (
            with_buyer_features(BUYER_ID, {"kind": "timestamp", "column": "ts", "periods": []}),
            "buyer_tower.features[1].periods",
            "at least one period is needed for 'cyclical'",
        ),
        (
            with_buyer_features({**BUYER_ID, "embedding_dim": 0}),
            "buyer_tower.features[0].embedding_dim",
            "Input should be greater than or equal to 1",
        ),
        (
            with_buyer_features({**BUYER_ID, "max_vocab_size": 20_000_000}),
            "buyer_tower.features[0].max_vocab_size",
            "Input should be less than or equal to 10000000",
        ),
        (
            {**FEATURES, "target": {"column": "target", "transforms": [{"op": "clip", "min": 5, "max": 1}]}},
            "target.transforms[0].max",
            "must be greater than min",
        ),
        (
            {**FEATURES, "target": {"column": "target", "transforms": [{"op": "scale"}]}},
            "target.transforms[0].factor",
            "scale needs a non-zero factor",
        ),
    ],
)
def test_each_feature_rule_names_its_field(config, field, message):
    assert problems(FeatureConfig, config) == {field: message}


def test_tower_roles_are_checked_with_the_columns_every_problem_at_once():
    config = {
        "buyer_tower": {
            "features": [{"kind": "categorical", "column": "city"}, {"kind": "id", "column": "product_id"}]
        },
        "product_tower": {"features": [{"kind": "numeric", "column": "price"}]},
        "target": {"column": "price"},
    }
    available = {"city": "string", "product_id": "string", "price": "float", "buyer_id": "string"}
    with pytest.raises(ConfigError) as caught:
        FeatureConfig.model_validate(config).check_columns(available)
    assert {p.field: p.message for p in caught.value.problems} == {
        "buyer_tower.features": "the buyer tower must include the 'buyer_id' column",
        "buyer_tower.features[1].column": "'product_id' belongs to the product tower",
        "product_tower.features": "the product tower must include the 'product_id' column",
        "target.column": "the target cannot also be an input feature",
    }


def test_a_vocabulary_feature_without_embedding_dim_gets_one_from_its_vocabulary_size():
    widths = {size: default_embedding_dim(size) for size in (10, 300, 4_000, 100_000, 10_000_000)}
    assert widths == {10: 8, 300: 16, 4_000: 32, 100_000: 72, 10_000_000: 128}
    feature = FeatureConfig.model_validate(FEATURES).buyer_tower.features[0].model_copy(update={"embedding_dim": None})
    assert feature.width() == default_embedding_dim(feature.max_vocab_size)


def test_a_ranking_model_needs_a_target_in_its_feature_config():
    features = FeatureConfig.model_validate({k: v for k, v in FEATURES.items() if k != "target"})
    with pytest.raises(ConfigError) as caught:
        ModelConfig.model_validate({"model_type": "ranking"}).check_against(features)
    assert str(caught.value) == "feature_config.target: a ranking model needs a target column in the feature config"


def test_configs_round_trip_through_json():
    model = ModelConfig.model_validate(MODEL)
    features = FeatureConfig.model_validate(FEATURES)
    assert ModelConfig.model_validate_json(model.model_dump_json()) == model
    assert FeatureConfig.model_validate_json(features.model_dump_json()) == features
