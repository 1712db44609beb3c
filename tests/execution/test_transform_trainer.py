"""Transform and Trainer: vocabularies and statistics from train, models that learn planted structure.

The data is generated here: 240 buyers in eight segments and 120 products in
eight categories. A buyer buys mostly (85%) in its segment's category,
products have a skewed popularity (so the popularity baseline is not
trivial), and the quantity is a function of segment x category plus a
little noise. ExampleGen (the real stage) splits it; every expected number
is computed independently from the Parquet files with pyarrow/numpy.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml_pipeline import metrics
from ml_pipeline.config.model import parameter_counts
from ml_pipeline.model.inputs import target_values, tower_batch
from ml_pipeline.reporting import InMemoryReporter
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.spec import PipelineSpec
from ml_pipeline.stages.example_gen import ExampleGen
from ml_pipeline.stages.trainer import Trainer
from ml_pipeline.stages.transform import Transform, tokens_sql

pytestmark = pytest.mark.slow

SEGMENTS = ["retail", "horeca", "office", "school", "hospital", "farm", "garage", "hotel"]
CATEGORIES = ["tools", "garden", "kitchen", "paint", "office", "cleaning", "food", "auto"]
COLORS = ["red", "blue", "green", "black", "white"]
NOUNS = ["hammer", "hose", "pan", "brush", "stapler", "mop", "flour", "tyre"]
STAGES = {"ExampleGen": ExampleGen(), "Transform": Transform(), "Trainer": Trainer()}
REPO = Path(__file__).resolve().parents[2]


# -- data -------------------------------------------------------------------------------------
def purchases(n_buyers: int = 240, n_products: int = 120, per_buyer: int = 25, seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    segment_of = np.arange(n_buyers) % len(SEGMENTS)
    category_of = np.arange(n_products) % len(CATEGORIES)
    popularity = 1.0 / (rng.permutation(n_products) + 1.0) ** 0.9
    buyers, products = [], []
    for buyer in range(n_buyers):
        k = rng.poisson(per_buyer) + 3
        own = popularity * (category_of == segment_of[buyer])
        picks = np.where(
            rng.random(k) < 0.85,
            rng.choice(n_products, k, p=own / own.sum()),
            rng.choice(n_products, k, p=popularity / popularity.sum()),
        )
        buyers += [buyer] * k
        products += list(picks)
    buyers, products = np.array(buyers), np.array(products)
    n = len(buyers)
    when = np.datetime64(datetime(2025, 1, 1)) + rng.integers(0, 90 * 86400, n).astype("timedelta64[s]")
    segment = np.array(SEGMENTS, dtype=object)[segment_of[buyers]]
    noisy = rng.random(n) < 0.05
    segment[noisy] = np.array(SEGMENTS, dtype=object)[rng.integers(0, len(SEGMENTS), noisy.sum())]
    category = category_of[products]
    quantity = 1 + ((segment_of[buyers] + 2 * category) % 4) * 1.5 + rng.normal(0, 0.3, n)
    price = np.round(np.exp(rng.normal(2 + category * 0.3, 0.4)), 2)
    titles = [f"{COLORS[p % 5].title()} {NOUNS[c]}, size {p % 3}" for p, c in zip(products, category)]
    return pa.table(
        {
            "customer": pa.array([f"b{b:04d}" for b in buyers]),
            "item": pa.array([f"p{p:04d}" for p in products]),
            "ordered_at": pa.array(when.astype("datetime64[s]"), pa.timestamp("s")),
            "qty": pa.array(np.round(quantity, 2)),
            "segment": pa.array(segment.tolist()),
            "category": pa.array(np.array(CATEGORIES)[category].tolist()),
            "title": pa.array(titles),
            "price": pa.array(price, mask=rng.random(n) < 0.05),
            "pack_size": pa.array(np.array([1, 6, 12, 24])[(products // 4) % 4]),
            "notes": pa.array([None] * n, pa.string()),
        }
    )


BUYER_FEATURES = [
    {"kind": "id", "column": "buyer_id", "embedding_dim": 16},
    {"kind": "categorical", "column": "segment", "embedding_dim": 4},
    {
        "kind": "timestamp",
        "column": "timestamp",
        "periods": ["hour_of_day", "day_of_week", "day_of_month", "month_of_year"],
    },
]
PRODUCT_FEATURES = [
    {"kind": "id", "column": "product_id", "embedding_dim": 16, "min_count": 8},
    {"kind": "categorical", "column": "category", "embedding_dim": 4},
    {"kind": "text", "column": "title", "embedding_dim": 4, "max_tokens": 3},
    {"kind": "numeric", "column": "price", "log1p": True},
    {"kind": "numeric", "column": "pack_size", "transform": "bucketize", "buckets": 4, "embedding_dim": 3},
]


def spec_for(
    path: Path,
    *,
    model: dict | None = None,
    training: dict | None = None,
    product_features: list | None = None,
    buyer_features: list | None = None,
    buyer_crosses=(),
    stages=("ExampleGen", "Transform", "Trainer"),
) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": "tt",
            "dataset": {
                "source": {"kind": "file", "path": str(path)},
                "mapping": {
                    "buyer_id": "customer",
                    "product_id": "item",
                    "timestamp": "ordered_at",
                    "target": "qty",
                    "buyer_features": [{"column": "segment"}],
                    "product_features": [
                        {"column": "category"},
                        {"column": "title"},
                        {"column": "price", "dtype": "float"},
                        {"column": "pack_size", "dtype": "int"},
                        {"column": "notes"},
                    ],
                },
            },
            "features": {
                "buyer_tower": {"features": buyer_features or BUYER_FEATURES, "crosses": list(buyer_crosses)},
                "product_tower": {
                    "features": product_features or PRODUCT_FEATURES,
                    "crosses": [{"columns": ["category", "pack_size"], "hash_buckets": 50, "embedding_dim": 4}],
                },
                "target": {"column": "target", "transforms": [{"op": "log1p"}]},
            },
            "model": model
            or {
                "model_type": "multitask",
                "buyer_tower": [{"type": "dense", "units": 32}],
                "product_tower": [{"type": "dense", "units": 32}, {"type": "batch_norm"}],
                "rating_head": [{"type": "dense", "units": 16}],
                "output_dim": 16,
                "retrieval_k": [10, 50],
            },
            "training": {"epochs": 6, "batch_size": 128, "early_stopping": {"enabled": False}, **(training or {})},
            "stages": list(stages),
        }
    )


class CrashingReporter(InMemoryReporter):
    """Dies after reporting a given epoch, like a worker killed mid-training."""

    def __init__(self, crash_after: int):
        super().__init__()
        self.crash_after = crash_after

    def epoch_completed(self, epoch, total_epochs, metrics):
        super().epoch_completed(epoch, total_epochs, metrics)
        if epoch == self.crash_after:
            raise RuntimeError(f"worker killed after epoch {epoch}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("transform_trainer")
    pq.write_table(purchases(), folder / "purchases.parquet")
    return folder


def run(workspace: Path, spec: PipelineSpec, run_id: str, reporter=None):
    runner = PipelineRunner(
        spec, workspace / "root", run_id=run_id, reporter=reporter or InMemoryReporter(), stages=STAGES
    )
    return runner.run(), runner.reporter


@pytest.fixture(scope="module")
def multitask(workspace):
    """One multitask training shared by the checks on its outputs."""
    spec = spec_for(workspace / "purchases.parquet")
    result, reporter = run(workspace, spec, "multitask")
    assert result.status == "completed", result.error
    return spec, result, reporter


def split_table(result, split: str) -> pa.Table:
    return pq.read_table(result.artifacts["ExampleGen"].path / split)


def held_out_buyers(table: pa.Table) -> tuple[pa.Table, list[set]]:
    """Each held-out buyer's latest row and the products they bought (as the Evaluator defines them)."""
    con = duckdb.connect()
    con.register("held", table)
    rows = con.sql("""
        SELECT h.*, b.relevant FROM (SELECT * FROM held QUALIFY row_number() OVER (PARTITION BY buyer_id
            ORDER BY "timestamp" DESC, product_id DESC) = 1) AS h
        JOIN (SELECT buyer_id AS b_id, list(DISTINCT product_id) AS relevant FROM held GROUP BY buyer_id) AS b
          ON h.buyer_id = b.b_id ORDER BY h.buyer_id""").to_arrow_table()
    return rows, [set(r) for r in rows.column("relevant").to_pylist()]


# -- Transform ------------------------------------------------------------------------------------
def test_transform_learns_vocabularies_and_statistics_from_train_only(workspace):
    spec = spec_for(workspace / "purchases.parquet", stages=("ExampleGen", "Transform"))
    result, _ = run(workspace, spec, "transform")
    assert result.status == "completed", result.error
    out = result.artifacts["Transform"].path
    doc = json.loads((out / "transform.json").read_text())
    train = split_table(result, "train")

    # vocabularies: most frequent first (ties by value), min_count respected, files readable
    counts = Counter(train.column("product_id").to_pylist())
    expected = [v for v, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if n >= 8]
    vocab = (out / "vocab" / "product_id.txt").read_text().split("\n")[:-1]
    assert vocab == expected
    assert len(vocab) < len(counts), "min_count=8 should drop some rare products"
    buyers = Counter(train.column("buyer_id").to_pylist())
    buyer_vocab = (out / "vocab" / "buyer_id.txt").read_text().split("\n")[:-1]
    assert buyer_vocab == [v for v, _ in sorted(buyers.items(), key=lambda item: (-item[1], item[0]))]
    [product_entry] = [e for e in doc["towers"]["product"]["features"] if e["column"] == "product_id"]
    assert product_entry["vocabulary_size"] == len(expected) and product_entry["distinct_values"] == len(counts)
    assert product_entry["oov_buckets"] == 1

    # text: lowercase word tokens, first max_tokens (3) of each title
    tokens = Counter(
        t for title in train.column("title").to_pylist() for t in re.findall(r"[^\W_]+", title.lower())[:3]
    )
    title_vocab = (out / "vocab" / "title.txt").read_text().split("\n")[:-1]
    assert title_vocab == [v for v, _ in sorted(tokens.items(), key=lambda item: (-item[1], item[0]))]
    assert "size" in tokens and "2" not in title_vocab  # the 4th token is cut by max_tokens

    towers = {t: {e["column"]: e for e in doc["towers"][t]["features"]} for t in ("buyer", "product")}
    price = np.array([p for p in train.column("price").to_pylist() if p is not None])
    assert towers["product"]["price"]["mean"] == pytest.approx(np.log1p(price).mean(), rel=1e-6)
    assert towers["product"]["price"]["variance"] == pytest.approx(np.log1p(price).var(), rel=1e-6)
    assert towers["product"]["price"]["null_count"] == train.num_rows - len(price)
    pack = np.array(train.column("pack_size").to_pylist(), dtype=float)
    assert towers["product"]["pack_size"]["boundaries"] == sorted(set(np.quantile(pack, [0.25, 0.5, 0.75]).tolist()))
    assert towers["buyer"]["timestamp"]["width"] == 8
    [cross] = doc["towers"]["product"]["crosses"]
    boundaries = towers["product"]["pack_size"]["boundaries"]
    combinations = set(zip(train.column("category").to_pylist(), np.searchsorted(boundaries, pack, side="right")))
    assert cross["hash_buckets"] == 50 and cross["distinct_combinations"] == len(combinations)
    assert [part["key"] for part in cross["parts"]] == ["value", "bucket"]
    assert doc["towers"]["product"]["input_dim"] == 16 + 4 + 4 + 1 + 3 + 4

    quantity = np.array(train.column("target").to_pylist())
    assert doc["target"]["mean"] == pytest.approx(quantity.mean())
    assert doc["target"]["transformed_mean"] == pytest.approx(np.log1p(quantity).mean())
    summary = result.artifacts["Transform"].summary
    assert summary.startswith(f"vocabularies created: buyer_id {len(buyers):,} · segment 8 · product_id {len(vocab):,}")


def test_the_model_sends_rare_and_unseen_values_to_the_oov_bucket(workspace):
    from ml_pipeline.model.build import build_models
    from ml_pipeline.model.transform import TransformArtifact

    spec = spec_for(workspace / "purchases.parquet", stages=("ExampleGen", "Transform"))
    result, _ = run(workspace, spec, "transform")  # reused from the previous test's run
    transform = TransformArtifact.load(result.artifacts["Transform"].path)
    vocab = transform.vocabulary(transform.tower("product")["features"][0])
    counts = Counter(split_table(result, "train").column("product_id").to_pylist())
    rare = next(p for p, n in counts.items() if n < 8)
    candidate = build_models(transform, spec.model).candidate
    lookup = candidate.get_layer("product_id_lookup")
    indices = np.asarray(lookup(np.array([vocab[0], vocab[1], rare, "never-seen"], dtype=object)))
    assert indices.tolist() == [1, 2, 0, 0]  # one OOV index first, then the vocabulary in frequency order
    assert candidate.get_layer("product_id_embedding").input_dim == len(vocab) + 1


def test_transform_fails_clearly_on_an_all_null_feature_or_a_vocabulary_over_the_limit(workspace, monkeypatch):
    features = [*PRODUCT_FEATURES, {"kind": "categorical", "column": "notes", "embedding_dim": 2}]
    spec = spec_for(workspace / "purchases.parquet", product_features=features, stages=("ExampleGen", "Transform"))
    result, _ = run(workspace, spec, "null-feature")
    assert result.status == "failed"
    assert result.error["message"].startswith(
        "features.product_tower.features[5].column: column 'notes' is null in every one of the"
    )

    monkeypatch.setattr("ml_pipeline.config.features.MAX_VOCAB", 100)
    buyers = [{**BUYER_FEATURES[0], "max_vocab_size": 1000}, *BUYER_FEATURES[1:]]
    spec = spec_for(workspace / "purchases.parquet", buyer_features=buyers, stages=("ExampleGen", "Transform"))
    result, _ = run(workspace, spec, "vocab-limit")
    assert result.status == "failed"
    message = result.error["message"]
    assert message.startswith("features.buyer_tower.features[0].column: the vocabulary of 'buyer_id' would have 240")
    assert "hard limit of 100" in message


def test_timestamp_buckets_and_calendar_crosses_are_learnt_and_applied_in_the_model(workspace):
    from ml_pipeline.model.build import build_models
    from ml_pipeline.model.transform import TransformArtifact

    buyer_features = [
        *BUYER_FEATURES[:2],
        {"kind": "timestamp", "column": "timestamp", "transform": "bucketize", "buckets": 5, "embedding_dim": 3},
    ]
    spec = spec_for(
        workspace / "purchases.parquet",
        buyer_features=buyer_features,
        stages=("ExampleGen", "Transform"),
        buyer_crosses=[{"columns": ["segment", "timestamp"], "hash_buckets": 64, "embedding_dim": 2}],
    )
    result, _ = run(workspace, spec, "timestamp-buckets")
    assert result.status == "completed", result.error
    transform = TransformArtifact.load(result.artifacts["Transform"].path)
    entry = transform.tower("buyer")["features"][2]
    train = split_table(result, "train")
    seconds = train.column("timestamp").cast(pa.timestamp("s")).cast(pa.int64()).to_numpy()
    assert entry["boundaries"] == [float(round(q)) for q in np.quantile(seconds, [0.2, 0.4, 0.6, 0.8])]

    query = build_models(transform, spec.model).query
    batch = tower_batch(train.slice(0, 200), spec.features, "buyer")
    buckets = np.asarray(query.get_layer("timestamp_buckets")(batch["timestamp"]))
    assert buckets.tolist() == np.searchsorted(entry["boundaries"], batch["timestamp"], side="right").tolist()
    assert np.asarray(query(batch)).shape == (200, 16)
    [cross] = transform.tower("buyer")["crosses"]
    assert cross["parts"][1]["key"] == "bucket" and cross["distinct_combinations"] <= 8 * 5


def test_text_tokens_and_calendar_fields_match_the_sql_and_python_definitions():
    from ml_pipeline.model import layers
    from ml_pipeline.model.layers import CalendarKey, CyclicalTime, TextTokens, civil_from_seconds
    from ml_pipeline.stages import transform

    assert layers.TOKEN_SEPARATORS == transform.TOKEN_SEPARATORS

    texts = ["Héllo, WORLD!! 12x  été", "", "  --a_b--  ", "ÇA va? Ça VA", "one two three four"]
    con = duckdb.connect()
    expected = [con.execute(f"SELECT {tokens_sql('?', 3)}", [t]).fetchone()[0] for t in texts]
    expected = [[t for t in row if t] for row in expected]
    got = TextTokens(3)(np.array(texts, dtype=object)).numpy().tolist()
    assert [[t.decode() for t in row if t] for row in got] == expected

    rng = np.random.default_rng(0)
    seconds = np.concatenate(
        [rng.integers(-2_500_000_000, 4_000_000_000, 2000), [951_782_400, 951_868_799, 1_709_164_800, -86_400, 0]]
    )  # leap days, 1969
    fields = {k: v.numpy() for k, v in civil_from_seconds(seconds).items()}
    for i, s in enumerate(seconds.tolist()):
        when = datetime(1970, 1, 1) + np.timedelta64(int(s), "s").item()
        assert (fields["year"][i], fields["month"][i], fields["day"][i], fields["hour"][i], fields["weekday"][i]) == (
            when.year,
            when.month,
            when.day,
            when.hour,
            when.weekday(),
        ), when
    monday_5am = 4 * 86400 + 5 * 3600  # 1970-01-05 05:00
    keys = CalendarKey(["hour_of_day", "day_of_week", "month_of_year"])(np.array([0, monday_5am], dtype=np.int64))
    assert [k.decode() for k in keys.numpy()] == ["0:3:0", "5:0:0"]
    encoded = CyclicalTime(["day_of_week", "hour_of_day"])(np.array([0], dtype=np.int64)).numpy()[0]
    thursday = 2 * np.pi * 3 / 7
    assert encoded == pytest.approx([np.sin(thursday), np.cos(thursday), 0.0, 1.0], abs=1e-6)


# -- Trainer -----------------------------------------------------------------------------------------
def test_multitask_model_beats_the_popularity_and_mean_baselines_on_held_out_data(multitask):
    from ml_pipeline.model import load_trained

    spec, result, _ = multitask
    trained = load_trained(result.artifacts["Trainer"].path)
    test = split_table(result, "test")
    catalog = pq.read_table(result.artifacts["ExampleGen"].path / "catalog.parquet")
    catalog_ids = np.array(catalog.column("product_id").to_pylist(), dtype=object)

    buyers, relevant = held_out_buyers(test)
    candidates = np.asarray(trained.candidate(tower_batch(catalog, spec.features, "product")))
    queries = np.asarray(trained.query(tower_batch(buyers, spec.features, "buyer")))
    top = catalog_ids[np.argsort(-(queries @ candidates.T), axis=1, kind="stable")[:, :10]]
    model = metrics.retrieval_metrics(top, relevant, [10], len(catalog_ids))
    popular = metrics.popularity_top_ids(catalog_ids, np.asarray(catalog.column("train_count")), 10, len(relevant))
    baseline = metrics.retrieval_metrics(popular, relevant, [10], len(catalog_ids))
    assert model["recall_at_10"] >= 1.5 * baseline["recall_at_10"], (model, baseline)

    inputs = {**tower_batch(test, spec.features, "buyer"), **tower_batch(test, spec.features, "product")}
    predicted = np.asarray(trained.rating(inputs))
    actual = target_values(test)
    mean = float(np.mean(target_values(split_table(result, "train"))))
    rating = metrics.rating_metrics(predicted, actual)
    assert rating["rmse"] <= 0.7 * metrics.rating_metrics(np.full_like(actual, mean), actual)["rmse"]
    assert predicted.shape == (test.num_rows,)


def test_every_epoch_is_reported_with_losses_quality_and_weight_statistics(multitask):
    spec, result, reporter = multitask
    events = reporter.of_kind("epoch_completed")
    assert [(e["epoch"], e["total_epochs"]) for e in events] == [(i, 6) for i in range(1, 7)]
    for event in events:
        m = event["metrics"]
        for key in (
            "loss",
            "val_loss",
            "retrieval_loss",
            "rating_loss",
            "recall_at_10",
            "recall_at_50",
            "rmse",
            "mae",
            "examples_per_second",
        ):
            assert isinstance(m[key], float), key
        for part in ("buyer_tower", "product_tower", "rating_head"):
            for stat in ("l1", "l2", "mean", "std", "min", "max"):
                assert isinstance(m[f"{part}_weight_{stat}"], float)
            assert m[f"{part}_grad_norm"] > 0
            for kind in ("weights", "gradients"):
                histogram = m["histograms"][kind][part]
                assert len(histogram["counts"]) == 20 and len(histogram["edges"]) == 21
        assert all(not isinstance(v, (dict, list)) for k, v in m.items() if k != "histograms")
    first, last = events[0]["metrics"], events[-1]["metrics"]
    assert last["loss"] < first["loss"] and last["rmse"] < first["rmse"]

    out = result.artifacts["Trainer"].path
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert history[-1]["val_loss"] == last["val_loss"]
    props = result.artifacts["Trainer"].properties
    assert props["epochs_run"] == 6 and props["devices"] == ["/cpu:0"] and props["examples_per_second"] > 0
    assert props["recall_at_50"] == last["recall_at_50"]
    assert re.fullmatch(r"6 epochs, Recall@50 0\.\d+, RMSE \d\.\d+ \(eval split\)", result.artifacts["Trainer"].summary)


def test_an_untrained_retrieval_model_ranks_products_by_popularity(multitask):
    """The product prior: each product's log share of the training rows, met by the buyer's constant 1,
    while the buyer's projection starts at zero; its weight is learned, the shares are not."""
    from ml_pipeline.artifact_types import TransformGraph
    from ml_pipeline.config.model import ModelConfig
    from ml_pipeline.model.build import PRIOR_WEIGHT, PRODUCT_BIAS, build_models, set_product_prior

    spec, result, _ = multitask
    catalog = pq.read_table(result.artifacts["ExampleGen"].path / "catalog.parquet")
    counts = dict(zip(catalog.column("product_id").to_pylist(), catalog.column("train_count").to_pylist()))
    model = ModelConfig.model_validate({"model_type": "retrieval", "output_dim": 8})
    built = build_models(TransformGraph.of(result.artifacts["Transform"]).load(), model)
    assert set_product_prior(built.candidate, TransformGraph.of(result.artifacts["Transform"]).load(), counts)
    buyers = tower_batch(split_table(result, "eval"), spec.features, "buyer")
    queries = np.asarray(built.query(buyers))
    assert queries.shape[1] == 8 + 1 and (queries[:, :-1] == 0).all() and (queries[:, -1] == 1).all()
    scores = queries[:1] @ np.asarray(built.candidate(tower_batch(catalog, spec.features, "product"))).T
    train_counts = np.asarray(catalog.column("train_count"))
    order = np.argsort(-scores[0], kind="stable")
    # the most bought first (the rare products past the vocabulary share its OOV row's floor)
    assert train_counts[order[:20]].tolist() == sorted(train_counts, reverse=True)[:20]
    trainable = {v.path.split("/")[0] for v in built.candidate.trainable_variables}
    assert PRIOR_WEIGHT in trainable and PRODUCT_BIAS not in trainable


def test_the_product_prior_weight_is_scaled_by_the_factor_the_eval_metric_scores_best(multitask):
    """After training, the learned prior weight times each of PRIOR_FACTORS is scored; the best is kept,
    and the learned weight itself unless another factor is strictly better."""
    from ml_pipeline.artifact_types import TransformGraph
    from ml_pipeline.config.model import ModelConfig
    from ml_pipeline.model.build import PRIOR_WEIGHT, build_models, calibrate_prior_weight

    _, result, _ = multitask
    model = ModelConfig.model_validate({"model_type": "retrieval", "output_dim": 4})
    built = build_models(TransformGraph.of(result.artifacts["Transform"]).load(), model)
    kernel = built.candidate.get_layer(PRIOR_WEIGHT).kernel
    kernel.assign(np.full((1, 1), 0.8, dtype=np.float32))

    def peaked_at(weight):  # a metric best at one weight
        return lambda: {"recall_at_10": -abs(float(kernel.numpy()[0, 0]) - weight)}

    factor, evaluation = calibrate_prior_weight(built.candidate, peaked_at(0.8 * 1.4), "recall_at_10")
    assert factor == 1.4 and kernel.numpy()[0, 0] == pytest.approx(0.8 * 1.4)
    assert evaluation["recall_at_10"] == pytest.approx(0.0, abs=1e-6)
    flat = calibrate_prior_weight(built.candidate, lambda: {"recall_at_10": 0.5}, "recall_at_10")
    assert flat == (1.0, {"recall_at_10": 0.5}) and kernel.numpy()[0, 0] == pytest.approx(0.8 * 1.4)
    ranking = ModelConfig.model_validate({"model_type": "ranking", "output_dim": 4})
    no_prior = build_models(TransformGraph.of(result.artifacts["Transform"]).load(), ranking)
    assert calibrate_prior_weight(no_prior.candidate, lambda: {"recall_at_10": 1.0}, "recall_at_10") is None


def test_the_retrieval_loss_is_the_softmax_of_the_corrected_logits_over_the_temperature(multitask):
    from ml_pipeline.artifact_types import TransformGraph
    from ml_pipeline.config.model import ModelConfig
    from ml_pipeline.model.build import build_models
    from ml_pipeline.model.training import CANDIDATE_INDEX, SAMPLING_PROBABILITY, Objective

    spec, result, _ = multitask
    model = ModelConfig.model_validate({"model_type": "retrieval", "output_dim": 4, "product_bias": False})
    built = build_models(TransformGraph.of(result.artifacts["Transform"]).load(), model)
    rows = split_table(result, "train")
    _, first = np.unique(np.asarray(rows.column("product_id").to_pylist(), dtype=object), return_index=True)
    rows = rows.take(pa.array(np.sort(first)[:16]))  # distinct products: no accidental hits
    buyers, products = tower_batch(rows, spec.features, "buyer"), tower_batch(rows, spec.features, "product")
    probability = np.linspace(0.01, 0.2, 16).astype(np.float32)
    batch = {**buyers, **products, CANDIDATE_INDEX: np.arange(16), SAMPLING_PROBABILITY: probability}
    logits = np.asarray(built.query(buyers)) @ np.asarray(built.candidate(products)).T - np.log(probability)[None, :]
    for temperature in (1.0, 0.5):
        scaled = logits / temperature
        expected = np.mean(np.log(np.exp(scaled).sum(axis=1)) - np.diag(scaled))
        loss = Objective(built, "retrieval", temperature=temperature).losses(batch, training=False)
        assert float(loss["retrieval_loss"]) == pytest.approx(expected, rel=1e-4)


def test_built_dense_layers_have_the_configured_parameter_counts(multitask):
    spec, result, _ = multitask
    summary = json.loads((result.artifacts["Trainer"].path / "trainer_summary.json").read_text())
    configured = parameter_counts(spec.model, spec.features)
    built = summary["parameters"]
    for tower in ("buyer", "product"):
        assert built["towers"][tower]["dense_params"] == configured["towers"][tower]["dense_params"]
        assert built["towers"][tower]["embedding_params"] <= configured["towers"][tower]["embedding_params"]
    assert built["rating_head"]["total"] == configured["rating_head"]["total"]
    assert summary["strategy"] == "default (CPU)" and summary["epochs_run"] == 6


def test_saved_models_load_in_a_fresh_process_and_give_the_same_outputs(multitask, tmp_path):
    from ml_pipeline.model import load_trained

    spec, result, _ = multitask
    eval_rows = split_table(result, "eval").slice(0, 50)
    buyer = tower_batch(eval_rows, spec.features, "buyer")
    product = tower_batch(eval_rows, spec.features, "product")
    np.savez(
        tmp_path / "inputs.npz", **{f"b_{k}": v for k, v in buyer.items()}, **{f"p_{k}": v for k, v in product.items()}
    )
    script = textwrap.dedent(f"""
        import numpy as np
        from ml_pipeline.model import load_trained
        data = np.load({str(tmp_path / "inputs.npz")!r}, allow_pickle=True)
        buyer = {{k[2:]: data[k] for k in data.files if k.startswith("b_")}}
        product = {{k[2:]: data[k] for k in data.files if k.startswith("p_")}}
        models = load_trained({str(result.artifacts["Trainer"].path)!r})
        np.savez({str(tmp_path / "outputs.npz")!r}, query=np.asarray(models.query(buyer)),
                 candidate=np.asarray(models.candidate(product)), rating=np.asarray(models.rating({{**buyer, **product}})))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = np.load(tmp_path / "outputs.npz")
    here = load_trained(result.artifacts["Trainer"].path)
    assert fresh["query"].shape == (50, 16) and fresh["candidate"].shape == (50, 16) and fresh["rating"].shape == (50,)
    np.testing.assert_allclose(fresh["query"], np.asarray(here.query(buyer)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fresh["candidate"], np.asarray(here.candidate(product)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fresh["rating"], np.asarray(here.rating({**buyer, **product})), rtol=1e-5, atol=1e-6)


def test_ranking_model_beats_the_mean_baseline(workspace):
    from ml_pipeline.model import load_trained

    model = {
        "model_type": "ranking",
        "buyer_tower": [],
        "product_tower": [],
        "output_dim": 8,
        "rating_head": [{"type": "dense", "units": 16}],
        "optimizer": "adam",
        "learning_rate": 0.02,
    }
    spec = spec_for(workspace / "purchases.parquet", model=model, training={"epochs": 4})
    result, reporter = run(workspace, spec, "ranking")
    assert result.status == "completed", result.error
    assert result.stages["Transform"]["status"] == "cached"  # same features as the multitask run
    trained = load_trained(result.artifacts["Trainer"].path)
    test = split_table(result, "test")
    predicted = np.asarray(
        trained.rating({**tower_batch(test, spec.features, "buyer"), **tower_batch(test, spec.features, "product")})
    )
    actual = target_values(test)
    mean = float(np.mean(target_values(split_table(result, "train"))))
    assert (
        metrics.rating_metrics(predicted, actual)["rmse"]
        <= 0.6 * metrics.rating_metrics(np.full_like(actual, mean), actual)["rmse"]
    )
    last = reporter.of_kind("epoch_completed")[-1]["metrics"]
    assert "recall_at_10" not in last and "rating_head_weight_l2" in last and "rmse" in last
    assert (result.artifacts["Trainer"].path / "rating_model.keras").is_file()


def test_early_stopping_stops_when_eval_recall_stalls_and_restores_the_best_epoch(workspace):
    from ml_pipeline.model.build import PRIOR_FACTORS

    model = {"model_type": "retrieval", "output_dim": 8, "retrieval_k": [10]}
    training = {
        "epochs": 10,
        "early_stopping": {"enabled": True, "patience": 2, "min_delta": 10.0},
        "hardware": {"gpu_count": 1, "allow_cpu_fallback": True},
    }
    calendar_cross = {"columns": ["segment", "timestamp"], "hash_buckets": 64, "embedding_dim": 2}
    spec = spec_for(workspace / "purchases.parquet", model=model, training=training, buyer_crosses=[calendar_cross])
    result, reporter = run(workspace, spec, "early-stop")
    assert result.status == "completed", result.error
    assert [e["epoch"] for e in reporter.of_kind("epoch_completed")] == [1, 2, 3]
    artifact = result.artifacts["Trainer"]
    assert artifact.summary.startswith("3 epochs (early stop at 3, best 1), Recall@10 ")
    assert (artifact.properties["epochs_run"], artifact.properties["best_epoch"]) == (3, 1)
    summary = json.loads((artifact.path / "trainer_summary.json").read_text())
    assert summary["restored_best_weights"] and summary["exported_epoch"] == 1
    assert summary["early_stopping_monitor"] == "recall_at_10"
    assert summary["final_metrics"]["prior_weight_factor"] in PRIOR_FACTORS  # then calibrated on eval
    assert summary["devices"] == ["/cpu:0"]
    logs = [e["message"] for e in reporter.of_kind("log")]
    assert any("none visible: training on the CPU (allow_cpu_fallback)" in m for m in logs)


def test_when_no_epoch_beats_the_untrained_model_on_eval_the_untrained_model_is_exported(workspace):
    """A learning rate too small to change anything: every epoch scores as the untrained model (the product
    prior: popularity's ranking), which is then what is exported."""
    model = {"model_type": "retrieval", "output_dim": 8, "optimizer": "sgd", "learning_rate": 1e-9, "retrieval_k": [10]}
    training = {"epochs": 2, "early_stopping": {"enabled": True}}
    result, reporter = run(
        workspace, spec_for(workspace / "purchases.parquet", model=model, training=training), "untrained"
    )
    assert result.status == "completed", result.error
    artifact = result.artifacts["Trainer"]
    summary = json.loads((artifact.path / "trainer_summary.json").read_text())
    assert (summary["epochs_run"], summary["best_epoch"], summary["exported_epoch"]) == (2, 0, 0)
    assert summary["restored_best_weights"] is True
    logs = [e["message"] for e in reporter.of_kind("log")]
    assert any("no epoch beat the untrained model's recall_at_10" in m for m in logs)


def test_a_gpu_request_without_a_gpu_fails_clearly(workspace):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    spec = spec_for(workspace / "purchases.parquet", training={"hardware": {"gpu_count": 2}})
    result, _ = run(workspace, spec, "gpu")
    assert result.status == "failed"
    assert result.error["stage"] == "Trainer"
    assert result.error["message"].startswith(
        "training.hardware.gpu_count: 2 GPU(s) requested but TensorFlow sees no GPU"
    )


def test_a_killed_trainer_resumes_from_its_last_checkpoint(workspace):
    model = {"model_type": "retrieval", "output_dim": 8, "retrieval_k": [10]}
    spec = spec_for(workspace / "purchases.parquet", model=model, training={"epochs": 4})
    first, crashed = run(workspace, spec, "resume", CrashingReporter(crash_after=2))
    assert first.status == "failed" and "worker killed after epoch 2" in first.error["message"]
    state = workspace / "root" / "tt" / "runs" / "resume" / "Trainer" / "work" / "checkpoint" / "state.json"
    assert json.loads(state.read_text())["epoch"] == 2

    second, reporter = run(workspace, spec, "resume")
    assert second.status == "completed", second.error
    # The restored epochs are reported again (a crash may have come between checkpoint and report;
    # reporters treat a repeated epoch as an update), then training continues at epoch 3.
    assert [e["epoch"] for e in reporter.of_kind("epoch_completed")] == [1, 2, 3, 4]
    assert any(
        "resuming from the checkpoint of epoch 2 of 4: continuing at epoch 3" in e["message"]
        for e in reporter.of_kind("log")
    )
    out = second.artifacts["Trainer"].path
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    first_losses = [e["metrics"]["loss"] for e in crashed.of_kind("epoch_completed")]
    assert [h["loss"] for h in history[:2]] == first_losses
    assert json.loads((out / "trainer_summary.json").read_text())["resumed_from_epoch"] == 2
    assert not state.exists()  # a finished training removes its checkpoint


@pytest.mark.parametrize("model_type", ["retrieval", "ranking", "multitask"])
def test_every_model_type_trains_mirrored_over_two_replicas(workspace, tmp_path, model_type):
    """MirroredStrategy's code path (per-replica batches, summed gradients) on two logical CPUs; one process
    per model type (two strategies in one process share collective keys)."""
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from pathlib import Path
        import ml_pipeline.stages.trainer as trainer
        from tests.execution import test_transform_trainer as t

        devices = ["/cpu:0", "/cpu:1"]
        trainer.choose_strategy = lambda hardware, log: trainer.Placement(
            tf.distribute.MirroredStrategy(devices), "MirroredStrategy", devices)
        model = {{"model_type": {model_type!r}, "output_dim": 8, "retrieval_k": [10]}}
        if {model_type!r} != "retrieval":
            model["rating_head"] = [{{"type": "dense", "units": 8}}]
        spec = t.spec_for(Path({str(workspace / "purchases.parquet")!r}), model=model, training={{"epochs": 2}})
        result, reporter = t.run(Path({str(tmp_path)!r}), spec, "mirrored")
        assert result.status == "completed", result.error
        assert result.artifacts["Trainer"].properties["strategy"] == "MirroredStrategy"
        losses = [e["metrics"]["loss"] for e in reporter.of_kind("epoch_completed")]
        assert len(losses) == 2 and losses[1] < losses[0], losses
        print("OK", result.artifacts["Trainer"].summary)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]


def test_early_stopping_keeps_the_epoch_with_the_highest_recall_and_the_lowest_rmse():
    from ml_pipeline.model.checkpoint import LoopState

    recall, rmse = LoopState(), LoopState()
    for epoch, (value, error) in enumerate([(0.2, 0.9), (0.3, 0.85), (0.25, 0.87), (0.28, 0.86)], start=1):
        recall.record(epoch, {"recall_at_100": value, "val_loss": 1.0}, 0.0, 2, "recall_at_100", higher_is_better=True)
        rmse.record(epoch, {"rmse": error}, 0.0, 2, "rmse")
    assert (recall.best_epoch, recall.best_value, recall.stopped_at) == (2, 0.3, 4)
    assert (rmse.best_epoch, rmse.best_value, rmse.stopped_at) == (2, 0.85, 4)


def test_the_training_params_optimizer_and_learning_rate_override_the_model_configs(workspace):
    from ml_pipeline.stages.trainer import TrainerParams, optimizer_settings

    spec = spec_for(workspace / "purchases.parquet", training={"optimizer": "adagrad", "learning_rate": 0.05})
    params = TrainerParams(model=spec.model, training=spec.training, features=spec.features)
    assert (spec.model.optimizer, spec.model.learning_rate) == ("adam", 0.01)  # the defaults
    assert optimizer_settings(params) == ("adagrad", 0.05)


def test_early_stopping_cannot_watch_a_metric_the_model_does_not_compute(workspace):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="recall_at_100 is not computed for this model"):
        spec_for(workspace / "purchases.parquet", training={"early_stopping": {"monitor": "recall_at_100"}})
    watched = spec_for(workspace / "purchases.parquet", training={"early_stopping": {"monitor": "recall_at_50"}})
    assert watched.training.early_stopping.monitor == "recall_at_50"
