"""Configs that fit the demo data (ml_pipeline.demo_data): the demo project's, the benchmarks' and the tests'."""

DEMO_MAPPING = {
    "buyer_id": "buyer_id",
    "product_id": "product_id",
    "timestamp": "timestamp",
    "target": "quantity",
    "buyer_features": [{"column": "buyer_segment"}, {"column": "buyer_city"}],
    "product_features": [
        {"column": "product_category"},
        {"column": "product_subcategory"},
        {"column": "price", "dtype": "float"},
    ],
}

DEMO_FEATURE_CONFIG = {
    "buyer_tower": {
        "features": [
            {"kind": "id", "column": "buyer_id", "embedding_dim": 32, "max_vocab_size": 50_000},
            {"kind": "categorical", "column": "buyer_segment", "embedding_dim": 4, "max_vocab_size": 50},
            {"kind": "categorical", "column": "buyer_city", "embedding_dim": 8, "max_vocab_size": 500},
            {
                "kind": "timestamp",
                "column": "timestamp",
                "transform": "cyclical",
                "periods": ["day_of_week", "month_of_year"],
            },
        ],
        "crosses": [{"columns": ["buyer_segment", "buyer_city"], "hash_buckets": 1000, "embedding_dim": 8}],
    },
    "product_tower": {
        "features": [
            {"kind": "id", "column": "product_id", "embedding_dim": 32, "max_vocab_size": 20_000},
            {"kind": "categorical", "column": "product_category", "embedding_dim": 8, "max_vocab_size": 100},
            {"kind": "categorical", "column": "product_subcategory", "embedding_dim": 8, "max_vocab_size": 1000},
            {"kind": "numeric", "column": "price", "transform": "bucketize", "buckets": 10, "embedding_dim": 4},
        ],
        "crosses": [{"columns": ["product_category", "product_subcategory"], "hash_buckets": 500, "embedding_dim": 8}],
    },
    "target": {"column": "target", "transforms": [{"op": "log1p"}]},
}

DEMO_MODEL_CONFIGS = {
    "Retrieval two-tower": {
        "model_type": "retrieval",
        "buyer_tower": [
            {"type": "dense", "units": 128},
            {"type": "dropout", "rate": 0.1},
            {"type": "dense", "units": 64},
        ],
        "product_tower": [
            {"type": "dense", "units": 128},
            {"type": "dropout", "rate": 0.1},
            {"type": "dense", "units": 64},
        ],
        "output_dim": 32,
        "optimizer": "adam",
        "learning_rate": 0.01,
    },
    "Ranking": {
        "model_type": "ranking",
        "buyer_tower": [{"type": "dense", "units": 64}],
        "product_tower": [{"type": "dense", "units": 64}],
        "output_dim": 32,
        "rating_head": [{"type": "dense", "units": 64}, {"type": "batch_norm"}, {"type": "dense", "units": 32}],
        "optimizer": "adam",
        "learning_rate": 0.01,
    },
    "Hybrid": {
        "model_type": "multitask",
        "buyer_tower": [{"type": "dense", "units": 128}, {"type": "dense", "units": 64}],
        "product_tower": [{"type": "dense", "units": 128}, {"type": "dense", "units": 64}],
        "output_dim": 32,
        "rating_head": [{"type": "dense", "units": 64}],
        "optimizer": "adam",
        "learning_rate": 0.01,
        "loss_weights": {"retrieval": 1.0, "rating": 0.5},
    },
}
