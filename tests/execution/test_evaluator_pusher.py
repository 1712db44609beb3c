"""Evaluator and Pusher on real (small) Keras models with planted structure.

The data: buyers and products belong to one of four groups; buyers mostly buy
their own group's products, the popular ones more often. The models are real
Keras functional models following the Trainer's contract (raw string inputs
-> StringLookup -> Embedding -> Dense), their weights set by hand so that a
buyer's query scores their own group's products first, by popularity — which
must beat the global popularity baseline. The rating model predicts
``1 + 2 * dot(query, candidate)``, the formula the targets were drawn from.

Metrics are checked against a naive implementation written here (loop over
buyers, sort the scores, count hits), and the exported SavedModel is loaded in
a fresh Python process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

keras = pytest.importorskip("keras")

from ml_pipeline import baselines  # noqa: E402
from ml_pipeline.artifact_types import Examples, Model  # noqa: E402
from ml_pipeline.artifacts import Artifact  # noqa: E402
from ml_pipeline.blessing import Blessing, Rule, advice, bless  # noqa: E402
from ml_pipeline.reporting import Reporter  # noqa: E402
from ml_pipeline.runner import PipelineRunner  # noqa: E402
from ml_pipeline.spec import EvaluatorConfig, PipelineSpec  # noqa: E402
from ml_pipeline.stages.base import SkipStage, Stage, StageContext, StageResult  # noqa: E402
from ml_pipeline.stages.evaluator import Evaluator, choose_holdout  # noqa: E402
from ml_pipeline.stages.pusher import Pusher  # noqa: E402
from tests.helpers import purchases_dataset  # noqa: E402

GROUPS, BUYERS, PRODUCTS, DIM = 4, 80, 1200, 5
KS = [5, 10, 50]
ROOT = Path(__file__).resolve().parents[2]


# -- data and models ------------------------------------------------------------------
def _ids(prefix, n):
    return [f"{prefix}{i:04d}" for i in range(n)]


def _write_split(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True)
    schema = pa.schema(
        [
            ("buyer_id", pa.string()),
            ("product_id", pa.string()),
            ("timestamp", pa.timestamp("us")),
            ("target", pa.float64()),
            ("segment", pa.string()),
            ("category", pa.string()),
        ]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "part-0.parquet")


def make_world(base: Path) -> dict:
    rng = np.random.default_rng(7)
    buyers, products = _ids("b", BUYERS), _ids("p", PRODUCTS)
    buyer_group = np.arange(BUYERS) % GROUPS
    product_group = np.arange(PRODUCTS) % GROUPS
    # popularity inside a group falls with the product's rank in it
    weights = 1.0 / (1.0 + np.arange(PRODUCTS) // GROUPS) ** 1.1
    members = {g: np.flatnonzero(product_group == g) for g in range(GROUPS)}

    def draw(b):
        group = buyer_group[b] if rng.random() < 0.85 else rng.integers(GROUPS)
        p = weights[members[group]] / weights[members[group]].sum()
        return int(rng.choice(members[group], p=p))

    plan = {
        split: [(b, draw(b)) for b in range(BUYERS) for _ in range(n)]
        for split, n in (("train", 15), ("eval", 2), ("test", 4))
    }
    train_count = np.bincount([p for _, p in plan["train"]], minlength=PRODUCTS)
    jitter = rng.uniform(0, 1e-3, PRODUCTS)  # no exact ties between products
    query_table = np.zeros((BUYERS + 1, DIM), np.float32)  # row 0: out-of-vocabulary
    query_table[1 + np.arange(BUYERS), buyer_group] = 1.0
    query_table[:, GROUPS] = 1.0
    candidate_table = np.zeros((PRODUCTS + 1, DIM), np.float32)
    candidate_table[1 + np.arange(PRODUCTS), product_group] = 1.0
    candidate_table[1:, GROUPS] = 0.1 * np.log1p(train_count) + jitter

    start = datetime(2025, 1, 1)
    examples = base / "ExampleGen" / "output"
    for split, pairs in plan.items():
        rows = []
        for i, (b, p) in enumerate(pairs):
            dot = float(query_table[1 + b] @ candidate_table[1 + p])
            rows.append(
                {
                    "buyer_id": buyers[b],
                    "product_id": products[p],
                    "timestamp": start
                    + timedelta(hours=i)
                    + timedelta(days={"train": 0, "eval": 60, "test": 90}[split]),
                    "target": 1.0 + 2.0 * dot + float(rng.normal(0, 0.3)),
                    # the buyer's segment changes over time: evaluation must use the latest row's
                    "segment": ["retail", "wholesale"][(b + i) % 2],
                    "category": f"cat{product_group[p]}",
                }
            )
        _write_split(examples / split, rows)
    pq.write_table(
        pa.table(
            {
                "product_id": products,
                "category": [f"cat{g}" for g in product_group],
                "train_count": train_count.astype(np.int64),
            }
        ),
        examples / "catalog.parquet",
    )

    models = {
        "planted_multitask": save_models(
            base / "planted_multitask" / "output", buyers, products, query_table, candidate_table, rating=True
        ),
        "planted_retrieval": save_models(
            base / "planted_retrieval" / "output", buyers, products, query_table, candidate_table, rating=False
        ),
        "random_multitask": save_models(
            base / "random_multitask" / "output",
            buyers,
            products,
            rng.normal(size=query_table.shape).astype(np.float32),
            rng.normal(size=candidate_table.shape).astype(np.float32),
            rating=True,
        ),
    }
    return {
        "base": base,
        "examples": examples,
        "buyers": buyers,
        "products": products,
        "train_count": train_count,
        "models": models,
    }


def _tower(id_name, other_name, vocabulary, other_vocabulary, table):
    inputs = {
        id_name: keras.Input(shape=(), dtype="string", name=id_name),
        other_name: keras.Input(shape=(), dtype="string", name=other_name),
    }
    id_embedding = keras.layers.Embedding(len(vocabulary) + 1, DIM, name=f"{id_name}_embedding")
    other_embedding = keras.layers.Embedding(len(other_vocabulary) + 1, DIM, name=f"{other_name}_embedding")
    x = keras.layers.Add()(
        [
            id_embedding(keras.layers.StringLookup(vocabulary=vocabulary, name=f"{id_name}_lookup")(inputs[id_name])),
            other_embedding(
                keras.layers.StringLookup(vocabulary=other_vocabulary, name=f"{other_name}_lookup")(inputs[other_name])
            ),
        ]
    )
    projection = keras.layers.Dense(DIM, name="projection")
    model = keras.Model(inputs, projection(x))
    id_embedding.set_weights([table])
    other_embedding.set_weights([np.zeros((len(other_vocabulary) + 1, DIM), np.float32)])
    projection.set_weights([np.eye(DIM, dtype=np.float32), np.zeros(DIM, np.float32)])
    return model


def save_models(folder: Path, buyers, products, query_table, candidate_table, rating: bool) -> Path:
    folder.mkdir(parents=True)
    query = _tower("buyer_id", "segment", buyers, ["retail", "wholesale"], query_table)
    candidate = _tower("product_id", "category", products, [f"cat{g}" for g in range(GROUPS)], candidate_table)
    query.save(folder / "query_model.keras")
    candidate.save(folder / "candidate_model.keras")
    if rating:
        inputs = {
            name: keras.Input(shape=(), dtype="string", name=name)
            for name in ("buyer_id", "segment", "product_id", "category")
        }
        dot = keras.layers.Dot(axes=1)(
            [
                query({n: inputs[n] for n in ("buyer_id", "segment")}),
                candidate({n: inputs[n] for n in ("product_id", "category")}),
            ]
        )
        head = keras.layers.Dense(1, name="rating")
        model = keras.Model(inputs, head(dot))
        head.set_weights([np.array([[2.0]], np.float32), np.array([1.0], np.float32)])
        model.save(folder / "rating_model.keras")
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


def make_spec(model_type="multitask", evaluator=None, push=None, algorithm="brute_force", stages=None):
    spec = {
        "name": "eval-push-test",
        "dataset": purchases_dataset(
            "/nonexistent/purchases.csv",
            buyer_features=[{"column": "segment"}],
            product_features=[{"column": "category"}],
        ),
        "features": {
            "buyer_tower": {
                "features": [
                    {"kind": "id", "column": "buyer_id", "embedding_dim": DIM},
                    {"kind": "categorical", "column": "segment", "embedding_dim": DIM},
                ]
            },
            "product_tower": {
                "features": [
                    {"kind": "id", "column": "product_id", "embedding_dim": DIM},
                    {"kind": "categorical", "column": "category", "embedding_dim": DIM},
                ]
            },
            "target": {"column": "target"},
        },
        "model": {"model_type": model_type, "retrieval_k": KS, "retrieval_algorithm": algorithm},
        "evaluator": evaluator or {},
        "push": push or {},
    }
    if stages:
        spec["stages"] = stages
    return PipelineSpec.model_validate(spec)


def artifact(folder: Path, stage: str, properties=None) -> Artifact:
    """An Artifact whose files are ``folder`` (which must be named ``output``)."""
    assert folder.name == "output"
    return Artifact(
        stage=stage, type="test", uri=str(folder.parent), fingerprint="f", run_id="r0", properties=properties or {}
    )


def run_stage(stage, spec, tmp_path: Path, inputs: dict[str, Artifact]) -> tuple[StageResult, Path]:
    out = tmp_path / stage.name / "output"
    out.mkdir(parents=True)
    readers = {name: stage.inputs[name].of(artifact) for name, artifact in inputs.items()}
    ctx = StageContext(
        "r1", out, out, tmp_path / stage.name / "work", readers, Reporter(), logging.getLogger(f"test.{stage.name}")
    )
    return stage.run(ctx, stage.params(spec)), out


def evaluate(world, tmp_path, model="planted_multitask", **spec_args):
    spec = make_spec(**spec_args)
    inputs = {
        "ExampleGen": artifact(world["examples"], "ExampleGen"),
        "Trainer": artifact(world["models"][model], "Trainer"),
    }
    return run_stage(Evaluator(), spec, tmp_path, inputs)


# -- the naive reference -----------------------------------------------------------------
def naive_retrieval(top_lists: list[list[str]], relevant: list[set], ks, catalog_size) -> dict[str, float]:
    out = {}
    for k in ks:
        recalls, ndcgs, shown = [], [], set()
        for top, wanted in zip(top_lists, relevant):
            hits = [pid in wanted for pid in top[:k]]
            recalls.append(sum(hits) / len(wanted))
            dcg = sum(1.0 / math.log2(rank + 2) for rank, hit in enumerate(hits) if hit)
            ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(wanted), k)))
            ndcgs.append(dcg / ideal)
            shown.update(top[:k])
        out[f"recall_at_{k}"] = sum(recalls) / len(recalls)
        out[f"ndcg_at_{k}"] = sum(ndcgs) / len(ndcgs)
        out[f"coverage_at_{k}"] = len(shown) / catalog_size
    reciprocal = []
    for top, wanted in zip(top_lists, relevant):
        ranks = [rank for rank, pid in enumerate(top[: max(ks)], start=1) if pid in wanted]
        reciprocal.append(1.0 / ranks[0] if ranks else 0.0)
    out["mrr"] = sum(reciprocal) / len(reciprocal)
    return out


def latest_test_rows(world):
    table = pq.read_table(world["examples"] / "test").to_pylist()
    latest, bought = {}, {}
    for row in table:
        bought.setdefault(row["buyer_id"], set()).add(row["product_id"])
        if row["buyer_id"] not in latest or row["timestamp"] > latest[row["buyer_id"]]["timestamp"]:
            latest[row["buyer_id"]] = row
    buyers = sorted(latest)
    return buyers, [latest[b] for b in buyers], [bought[b] for b in buyers], table


def keras_models(world, name):
    folder = world["models"][name]
    rating = folder / "rating_model.keras"
    return (
        keras.models.load_model(folder / "query_model.keras"),
        keras.models.load_model(folder / "candidate_model.keras"),
        keras.models.load_model(rating) if rating.exists() else None,
    )


def keras_embed(model, columns: dict[str, list]) -> np.ndarray:
    return np.asarray(model({k: np.asarray(v, dtype=object) for k, v in columns.items()}))


def catalog_columns(world):
    return {"product_id": world["products"], "category": [f"cat{i % GROUPS}" for i in range(PRODUCTS)]}


# -- Evaluator: metrics -----------------------------------------------------------------------
def test_metrics_match_a_naive_implementation_and_beat_popularity(world, tmp_path):
    result, out = evaluate(world, tmp_path)
    evaluation = json.loads((out / "evaluation.json").read_text())
    buyers, latest, relevant, rows = latest_test_rows(world)
    query, candidate, rating = keras_models(world, "planted_multitask")

    catalog_embeddings = keras_embed(candidate, catalog_columns(world))
    queries = keras_embed(
        query, {"buyer_id": [r["buyer_id"] for r in latest], "segment": [r["segment"] for r in latest]}
    )
    model_top = []
    for q in queries:
        scores = [float(np.dot(q, c)) for c in catalog_embeddings]
        order = sorted(range(PRODUCTS), key=lambda i: -scores[i])
        model_top.append([world["products"][i] for i in order[: max(KS)]])
    popular = sorted(range(PRODUCTS), key=lambda i: (-world["train_count"][i], world["products"][i]))
    popular_top = [[world["products"][i] for i in popular[: max(KS)]]] * len(buyers)
    expected_model = naive_retrieval(model_top, relevant, KS, PRODUCTS)
    expected_popularity = naive_retrieval(popular_top, relevant, KS, PRODUCTS)

    assert (evaluation["holdout"], evaluation["buyers"]) == ("test", BUYERS)
    for name, value in expected_model.items():
        assert evaluation["candidate"][name] == pytest.approx(value, abs=1e-6), name
        assert evaluation["popularity"][name] == pytest.approx(expected_popularity[name], abs=1e-6), name
    for k in KS:
        assert evaluation["candidate"][f"recall_at_{k}"] > evaluation["popularity"][f"recall_at_{k}"] + 0.05, k

    predicted = np.asarray(
        rating(
            {
                k: np.asarray([r[k] for r in rows], dtype=object)
                for k in ("buyer_id", "segment", "product_id", "category")
            }
        )
    ).reshape(-1)
    actual = [r["target"] for r in rows]
    rmse = math.sqrt(sum((p - a) ** 2 for p, a in zip(predicted, actual)) / len(rows))
    mae = sum(abs(p - a) for p, a in zip(predicted, actual)) / len(rows)
    train_targets = [r["target"] for r in pq.read_table(world["examples"] / "train").to_pylist()]
    mean = sum(train_targets) / len(train_targets)
    mean_rmse = math.sqrt(sum((mean - a) ** 2 for a in actual) / len(rows))
    assert evaluation["candidate"]["rmse"] == pytest.approx(rmse, rel=1e-5)
    assert evaluation["candidate"]["mae"] == pytest.approx(mae, rel=1e-5)
    assert evaluation["mean_baseline"]["rmse"] == pytest.approx(mean_rmse, rel=1e-5)
    assert rmse < 0.5 < mean_rmse
    assert evaluation["baseline_model"] is None

    props = result.properties
    assert props["recall_at_50"] == evaluation["candidate"]["recall_at_50"]
    assert props["popularity_recall_at_50"] == evaluation["popularity"]["recall_at_50"]
    assert props["rmse"] == evaluation["candidate"]["rmse"] and props["blessed"] is True
    recall, popularity = props["recall_at_50"], props["popularity_recall_at_50"]
    assert result.summary.startswith(f"BLESSED — Recall@50 {recall:.4g} vs popularity {popularity:.4g}")
    blessing = json.loads((out / "blessing.json").read_text())
    assert blessing["blessed"] is True and blessing["policy"]["decided_by"] == "first_run_policy"


def test_the_eval_split_is_used_when_test_is_empty(tmp_path):
    from ml_pipeline.data import sources

    rows = [
        {
            "buyer_id": "b1",
            "product_id": "p1",
            "timestamp": datetime(2025, 1, 1),
            "target": 1.0,
            "segment": "retail",
            "category": "cat0",
        }
    ]
    _write_split(tmp_path / "eval", rows)
    _write_split(tmp_path / "test", [])
    con = sources.connect()
    holdout = choose_holdout(con, Examples(tmp_path))
    assert (holdout.split, holdout.rows) == ("eval", 1)


def test_chunked_metrics_equal_one_pass_and_a_catalog_smaller_than_k_is_padded():
    from ml_pipeline.scoring import RetrievalAccumulator

    top = np.array([[2, 0, 1], [1, 2, 0], [0, 1, 2]])
    relevant = [{0}, {0, 1}, {2, -5}]
    whole, chunked = RetrievalAccumulator([1, 5], 3), RetrievalAccumulator([1, 5], 3)
    whole.add(top, relevant)
    chunked.add(top[:1], relevant[:1])
    chunked.add(top[1:], relevant[1:])
    assert chunked.result() == pytest.approx(whole.result())
    expected = naive_retrieval(
        [[str(i) for i in row] for row in top], [{str(i) for i in r} for r in relevant], [1, 5], 3
    )
    for name, value in expected.items():
        assert whole.result()[name] == pytest.approx(value), name


def test_the_bias_and_cooccurrence_baselines_are_reported_beside_the_model_and_not_blessed_on(world, tmp_path):
    result, out = evaluate(world, tmp_path)
    evaluation = json.loads((out / "evaluation.json").read_text())
    train = pq.read_table(world["examples"] / "train").to_pandas()
    test = pq.read_table(world["examples"] / "test").to_pandas()
    expected = baselines.bias_predictions(train, test)
    rmse = math.sqrt(float(np.mean((expected - test["target"].to_numpy()) ** 2)))
    assert evaluation["bias_baseline"]["rmse"] == pytest.approx(rmse, rel=1e-5)
    assert set(evaluation["cooccurrence_baseline"]) == set(evaluation["popularity"])
    # buyers mostly buy within their group: what their group bought beats everyone's best sellers
    assert evaluation["cooccurrence_baseline"]["recall_at_10"] > evaluation["popularity"]["recall_at_10"]
    assert result.properties["bias_baseline_rmse"] == evaluation["bias_baseline"]["rmse"]
    assert "co-occurrence" in result.summary and "biases" in result.summary
    blessing = json.loads((out / "blessing.json").read_text())
    assert not any("co-occurrence" in r or "biases" in r for r in blessing["reasons"])
    # the planted model gives each group its own list: no collapse, no warning
    assert evaluation["collapse"]["popularity_top10_share"] < 0.5 and evaluation["warnings"] == []


def test_a_model_that_gives_everyone_the_best_sellers_is_flagged(world, tmp_path):
    products, counts = np.asarray(world["products"]), np.asarray(world["train_count"])
    rank = np.argsort(np.lexsort((products.astype(str), -counts)))  # the popularity baseline's order
    query_table = np.zeros((len(world["buyers"]) + 1, DIM), np.float32)
    query_table[:, 0] = 1.0  # every buyer the same query
    candidate_table = np.zeros((len(products) + 1, DIM), np.float32)
    candidate_table[1:, 0] = len(products) - rank  # scored by popularity
    collapsed = save_models(
        tmp_path / "collapsed" / "output", world["buyers"], products, query_table, candidate_table, rating=True
    )
    result, out = evaluate({**world, "models": {"collapsed": collapsed}}, tmp_path / "evaluated", model="collapsed")
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["collapse"]["popularity_top10_share"] == 1.0
    assert evaluation["candidate"]["coverage_at_10"] == pytest.approx(10 / len(products))
    [warning] = evaluation["warnings"]
    assert warning.startswith("100% of held-out buyers get exactly the popularity top 10")
    assert result.properties["warnings"] == [warning]


def test_the_bias_baseline_recovers_additive_ratings():
    train = pd.DataFrame(
        {"buyer_id": ["a", "a", "b", "b"], "product_id": ["x", "y", "x", "y"], "target": [4.0, 2.0, 5.0, 3.0]}
    )
    held_out = pd.DataFrame({"buyer_id": ["a", "b", "new"], "product_id": ["y", "x", "x"]})
    predicted = baselines.bias_predictions(train, held_out, regularisation=0.0, sweeps=50)
    # mean 3.5, buyer a -0.5, b +0.5, product x +1, y -1; an unknown buyer gets no bias
    assert predicted == pytest.approx([2.0, 5.0, 4.5])


def test_the_cooccurrence_baseline_recommends_what_co_buyers_bought_and_popularity_to_strangers():
    train_buyers = np.array(["a", "a", "b", "b", "c", "e"])
    train_rows = np.array([0, 1, 0, 1, 0, 2])  # a and b bought products 0 and 1; c bought 0; e bought 2
    counts = np.array([3, 2, 1, 0])
    [top] = list(baselines.cooccurrence_top_k(train_buyers, train_rows, 4, np.array(["c", "stranger"]), counts, 3))
    # c: product 1 is bought with 0; 0 is not its own neighbour, then popularity breaks the tie with 2
    assert top.tolist() == [[1, 0, 2], [0, 1, 2]]
    assert baselines.cf_skip_reason(10, 10) is None
    assert "over the co-occurrence baseline's limit" in baselines.cf_skip_reason(baselines.CF_MAX_TRAIN_ROWS + 1, 10)


def test_the_share_of_buyers_given_exactly_the_popularity_list_is_counted():
    from ml_pipeline.scoring import SAME_AS_POPULARITY, RetrievalAccumulator

    accumulator = RetrievalAccumulator([2], 5, reference_top=np.array([3, 1]))
    accumulator.add(np.array([[1, 3], [3, 1], [3, 4], [0, 2]]), [{1}, {3}, {4}, {2}])  # order does not matter
    result = accumulator.result()
    assert result[SAME_AS_POPULARITY] == 0.5
    assert result["coverage_at_2"] == 1.0


# -- blessing rules ---------------------------------------------------------------------------
def config(**values) -> EvaluatorConfig:
    return EvaluatorConfig.model_validate(values)


def test_a_passing_threshold_blesses_with_its_reason():
    verdict = bless(
        config(thresholds=[{"metric": "recall_at_100", "value": 0.35}]), "retrieval", [10, 100], {"recall_at_100": 0.41}
    )
    assert verdict.blessed
    assert verdict.reasons[0] == "Recall@100 0.41 ≥ 0.35 ✓"


def test_a_failing_threshold_does_not_bless_and_says_why():
    verdict = bless(
        config(thresholds=[{"metric": "recall_at_100", "value": 0.5}, {"metric": "rmse", "value": 2.0}]),
        "multitask",
        [100],
        {"recall_at_100": 0.41, "rmse": 1.93},
    )
    assert not verdict.blessed
    assert verdict.reasons[:2] == ["Recall@100 0.41 < 0.5 ✗", "RMSE 1.93 ≤ 2 ✓"]


def test_a_regression_beyond_the_tolerance_does_not_bless():
    verdict = bless(
        config(baseline_model_uri="/models/v3", tolerance=0.01),
        "retrieval",
        [100],
        {"recall_at_100": 0.37},
        {"recall_at_100": 0.39},
        "v3",
    )
    assert not verdict.blessed
    assert verdict.reasons[-1].startswith("Recall@100 0.37 vs baseline v3 0.39: -0.02 ✗")


def test_a_change_within_the_tolerance_blesses():
    worse = bless(
        config(baseline_model_uri="/m", tolerance=0.03),
        "retrieval",
        [100],
        {"recall_at_100": 0.37},
        {"recall_at_100": 0.39},
        "v3",
    )
    better = bless(
        config(baseline_model_uri="/m"), "retrieval", [100], {"recall_at_100": 0.41}, {"recall_at_100": 0.39}, "v3"
    )
    assert worse.blessed and better.blessed
    assert better.reasons[-1] == "Recall@100 0.41 vs baseline v3 0.39: +0.02 ✓"


def test_ranking_models_compare_rmse_where_lower_is_better():
    verdict = bless(
        config(baseline_model_uri="/m", tolerance=0.05), "ranking", [10], {"rmse": 1.93}, {"rmse": 1.80}, "v3"
    )
    assert not verdict.blessed and verdict.policy["compare_metric"] == "rmse"
    assert verdict.reasons[-1].startswith("RMSE 1.93 vs baseline v3 1.8: +0.13 ✗")


def test_first_run_blesses_when_thresholds_pass_under_that_policy():
    passing = bless(config(thresholds=[{"metric": "mrr", "value": 0.1}]), "retrieval", [10], {"mrr": 0.3})
    failing = bless(config(thresholds=[{"metric": "mrr", "value": 0.5}]), "retrieval", [10], {"mrr": 0.3})
    assert passing.blessed and not failing.blessed
    assert passing.reasons[-1] == "first run, no baseline model: blessed by first_run_policy bless_if_thresholds_pass"
    assert passing.policy["decided_by"] == "first_run_policy"


def test_first_run_is_never_blessed_under_never_bless():
    verdict = bless(
        config(first_run_policy="never_bless", thresholds=[{"metric": "mrr", "value": 0.1}]),
        "retrieval",
        [10],
        {"mrr": 0.3},
    )
    assert not verdict.blessed
    assert verdict.reasons[-1] == "first run, no baseline model: first_run_policy is never_bless ✗"


def test_a_first_run_below_popularity_is_not_blessed_and_says_by_how_much():
    verdict = bless(config(), "retrieval", [10, 100], {"recall_at_100": 0.0584}, naive={"recall_at_100": 0.364})
    assert not verdict.blessed
    assert "Recall@100 0.0584 ≤ popularity 0.364 ✗" in verdict.reasons


def test_an_experiments_verdict_is_advice_naming_the_baseline_it_is_below():
    below = bless(config(), "retrieval", [100], {"recall_at_100": 0.0584}, naive={"recall_at_100": 0.364})
    assert advice(below.blessed, below.reasons) == (
        "would not be blessed: below popularity (Recall@100 0.0584 ≤ popularity 0.364 ✗)"
    )
    worse = bless(config(), "ranking", [100], {"rmse": 1.2}, naive={"rmse": 1.0})
    assert advice(worse.blessed, worse.reasons).startswith("would not be blessed: below the mean rating (RMSE 1.2")
    above = bless(config(), "retrieval", [100], {"recall_at_100": 0.4}, naive={"recall_at_100": 0.364})
    assert advice(above.blessed, above.reasons) == "would be blessed"
    assert advice(None, []) is None


def test_a_first_run_must_beat_popularity_strictly_or_by_the_configured_margin():
    level = bless(config(), "multitask", [100], {"recall_at_100": 0.3}, naive={"recall_at_100": 0.3})
    above = bless(config(), "multitask", [100], {"recall_at_100": 0.38}, naive={"recall_at_100": 0.27})
    short = bless(
        config(naive_baseline_margin=0.2), "multitask", [100], {"recall_at_100": 0.38}, naive={"recall_at_100": 0.27}
    )
    off = bless(
        config(naive_baseline_margin=None), "retrieval", [100], {"recall_at_100": 0.1}, naive={"recall_at_100": 0.3}
    )
    assert not level.blessed and above.blessed and not short.blessed and off.blessed
    assert "Recall@100 0.38 > popularity 0.27 ✓" in above.reasons
    assert "Recall@100 0.38 ≤ popularity 0.27 + margin 0.2 ✗" in short.reasons


def test_a_ranking_model_must_beat_the_mean_rating():
    worse = bless(config(), "ranking", [10], {"rmse": 1.1}, naive={"rmse": 1.06})
    better = bless(config(), "ranking", [10], {"rmse": 0.87}, naive={"rmse": 1.06})
    assert not worse.blessed and "RMSE 1.1 ≥ mean 1.06 ✗" in worse.reasons
    assert better.blessed and "RMSE 0.87 < mean 1.06 ✓" in better.reasons


def test_with_a_baseline_model_the_popularity_rule_still_applies():
    verdict = bless(
        config(baseline_model_uri="/m"),
        "retrieval",
        [100],
        {"recall_at_100": 0.2},
        {"recall_at_100": 0.1},
        "v3",
        naive={"recall_at_100": 0.3},
    )
    assert not verdict.blessed and verdict.policy["decided_by"] == "baseline_comparison"
    assert [rule.passed for rule in verdict.rules if rule.baseline is not None] == [False, True]


def test_the_blessing_records_each_rule_it_applied(tmp_path):
    verdict = bless(
        config(thresholds=[{"metric": "recall_at_100", "value": 0.5}], baseline_model_uri="/m"),
        "retrieval",
        [100],
        {"recall_at_100": 0.41},
        {"recall_at_100": 0.39},
        "v3",
    )
    threshold, compared = verdict.rules
    assert (threshold.metric, threshold.value, threshold.threshold, threshold.passed) == (
        "recall_at_100",
        0.41,
        0.5,
        False,
    )
    assert (compared.metric, compared.value, compared.baseline, compared.passed) == ("recall_at_100", 0.41, 0.39, True)
    assert not verdict.blessed and verdict.failed() == [threshold]
    assert verdict.reasons == [threshold.text, compared.text]
    verdict.save(tmp_path)
    assert Blessing.load(tmp_path) == verdict
    assert json.loads((tmp_path / "blessing.json").read_text())["reasons"] == verdict.reasons


def test_a_disabled_evaluator_blesses_without_scoring(world, tmp_path):
    result, out = evaluate(
        world, tmp_path, evaluator={"enabled": False, "thresholds": [{"metric": "recall_at_50", "value": 0.99}]}
    )
    assert result.properties["blessed"] is True and result.properties["reasons"] == ["evaluation disabled"]
    assert json.loads((out / "blessing.json").read_text())["reasons"] == ["evaluation disabled"]
    assert result.summary == "BLESSED — evaluation disabled"


def test_a_baseline_model_is_scored_on_the_same_holdout_and_a_regression_is_not_blessed(world, tmp_path):
    planted = str(world["models"]["planted_multitask"])
    result, out = evaluate(
        world, tmp_path, model="random_multitask", evaluator={"baseline_model_uri": planted, "baseline_label": "v3"}
    )
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["baseline_model"]["label"] == "v3"
    assert evaluation["baseline_model"]["metrics"]["recall_at_50"] > evaluation["candidate"]["recall_at_50"]
    assert not result.properties["blessed"]
    assert "vs baseline v3" in result.properties["reasons"][-1] and result.properties["reasons"][-1].count("✗")
    assert result.summary.startswith("NOT BLESSED — Recall@50")


def test_the_same_model_as_baseline_is_blessed(world, tmp_path):
    planted = str(world["models"]["planted_multitask"])
    result, out = evaluate(world, tmp_path, evaluator={"baseline_model_uri": planted})
    props = result.properties
    assert props["blessed"] and props["baseline_recall_at_50"] == pytest.approx(props["recall_at_50"])
    assert props["reasons"][-1].endswith(": +0 ✓")
    assert props["baseline_label"] == "planted_multitask"


# -- Pusher ----------------------------------------------------------------------------------
class CopyStage(Stage):
    """Publishes a prepared folder as this stage's output (stands in for ExampleGen/Trainer in a runner test)."""

    source: Path

    def run(self, ctx, params):
        shutil.copytree(self.source, ctx.output, dirs_exist_ok=True)
        return StageResult(f"copied {self.source}")


class PlantedModel(Model):
    """The planted models: a Trainer output's Keras models, without its history and summary."""

    FILES = {name: Model.FILES[name] for name in ("query", "candidate", "rating")}


def copy_stage(name: str, source: Path, output) -> Stage:
    return type(name, (CopyStage,), {"name": name, "output": output, "source": source})()


def test_an_unblessed_model_is_not_pushed(world, tmp_path):
    spec = make_spec(
        evaluator={"first_run_policy": "never_bless"},
        push={"destination": str(tmp_path / "dest")},
        stages=["ExampleGen", "Trainer", "Evaluator", "Pusher"],
    )
    stages = {
        "ExampleGen": copy_stage("ExampleGen", world["examples"], Examples),
        "Trainer": copy_stage("Trainer", world["models"]["planted_multitask"], PlantedModel),
        "Evaluator": Evaluator(),
        "Pusher": Pusher(),
    }
    runner = PipelineRunner(spec, tmp_path / "root", run_id="r1", stages=stages)
    result = runner.run()
    assert result.status == "completed" and result.blessed is False
    pusher = result.stages["Pusher"]
    assert pusher["status"] == "skipped"
    assert pusher["reason"] == "model not blessed: first run, no baseline model: first_run_policy is never_bless ✗"
    assert not (runner.store.stage_dir("r1", "Pusher") / "manifest.json").exists()
    assert not (tmp_path / "dest").exists()
    with pytest.raises(SkipStage):
        run_stage(
            Pusher(),
            spec,
            tmp_path / "direct",
            {
                "Evaluator": artifact(
                    tmp_path / "root" / "eval-push-test" / "runs" / "r1" / "Evaluator" / "output",
                    "Evaluator",
                    {"blessed": False, "reasons": ["Recall@50 0.1 < 0.2 ✗"]},
                )
            },
        )


@pytest.fixture(scope="module")
def pushed(world, tmp_path_factory):
    """Three exports: multitask (brute force, pushed to a destination), retrieval (ScaNN), ranking."""
    base = tmp_path_factory.mktemp("pushed")
    evaluation = base / "Evaluator" / "output"
    evaluation.mkdir(parents=True)
    Blessing(True, [Rule("ok", True)]).save(evaluation)
    blessed = artifact(evaluation, "Evaluator", {"blessed": True, "reasons": ["ok"]})
    exports = {}
    for key, model, model_type, algorithm, destination in (
        ("brute", "planted_multitask", "multitask", "brute_force", base / "deploy" / "models" / "recs"),
        ("scann", "planted_retrieval", "retrieval", "scann", None),
        ("ranking", "planted_multitask", "ranking", "brute_force", None),
    ):
        spec = make_spec(
            model_type=model_type, algorithm=algorithm, push={"destination": str(destination)} if destination else None
        )
        inputs = {
            "ExampleGen": artifact(world["examples"], "ExampleGen"),
            "Trainer": artifact(world["models"][model], "Trainer"),
            "Evaluator": blessed,
        }
        result, out = run_stage(Pusher(), spec, base / key, inputs)
        exports[key] = {"result": result, "out": out, "destination": destination}

    # a fresh process: nothing of this one (Keras models, registered ops) is there
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        import tensorflow as tf
        paths, buyers, segments, products, categories, out = json.loads(sys.argv[1])
        answers = {}
        brute = tf.saved_model.load(paths["brute"])  # plain TensorFlow: no ml_pipeline import needed
        answers["brute_signatures"] = sorted(brute.signatures)
        top = brute.signatures["serving_default"](buyer_id=tf.constant(buyers), segment=tf.constant(segments))
        answers["brute_ids"] = top["product_ids"].numpy().astype(str).tolist()
        answers["brute_scores"] = top["scores"].numpy().tolist()
        answers["query"] = brute.signatures["query_embedding"](
            buyer_id=tf.constant(buyers), segment=tf.constant(segments))["embedding"].numpy().tolist()
        answers["candidate"] = brute.signatures["candidate_embedding"](
            product_id=tf.constant(products), category=tf.constant(categories))["embedding"].numpy().tolist()
        answers["rating"] = brute.signatures["predict_rating"](
            buyer_id=tf.constant(buyers), segment=tf.constant(segments), product_id=tf.constant(products[:len(buyers)]),
            category=tf.constant(categories[:len(buyers)]))["rating"].numpy().tolist()
        from ml_pipeline.serving.model import Recommender
        scann = Recommender(paths["scann"])
        answers["scann_signatures"] = sorted(scann.signatures)
        answers["scann_ids"] = scann.predict({"buyer_id": buyers, "segment": segments})["product_ids"].astype(str).tolist()
        answers["recommend"] = scann.recommend({"buyer_id": buyers[0], "segment": segments[0]}, k=3)
        ranking = Recommender(paths["ranking"])
        top = ranking.predict({"buyer_id": buyers, "segment": segments})
        answers["ranking_ids"] = top["product_ids"].astype(str).tolist()
        answers["ranking_scores"] = top["scores"].tolist()
        json.dump(answers, open(out, "w"))
    """)
    buyers = world["buyers"][:12]
    segments = ["retail", "wholesale"] * 6
    columns = catalog_columns(world)
    paths = {
        "brute": str(exports["brute"]["destination"]),  # the pushed copy, not the run's output
        "scann": str(exports["scann"]["out"] / "serving_model"),
        "ranking": str(exports["ranking"]["out"] / "serving_model"),
    }
    answers_file = base / "answers.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            json.dumps([paths, buyers, segments, columns["product_id"], columns["category"], str(answers_file)]),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return {"exports": exports, "answers": json.loads(answers_file.read_text()), "buyers": buyers, "segments": segments}


def test_the_pushed_model_answers_top_k_like_brute_force_over_the_keras_models(world, pushed):
    answers, props = pushed["answers"], pushed["exports"]["brute"]["result"].properties
    assert props["retrieval"] == "brute_force" and props["k"] == max(KS)
    assert props["signatures"] == ["candidate_embedding", "predict_rating", "query_embedding", "serving_default"]
    query, candidate, rating = keras_models(world, "planted_multitask")
    queries = keras_embed(query, {"buyer_id": pushed["buyers"], "segment": pushed["segments"]})
    catalog_embeddings = keras_embed(candidate, catalog_columns(world))
    scores = queries @ catalog_embeddings.T
    catalog = set(world["products"])
    for row, (ids, got_scores) in enumerate(zip(answers["brute_ids"], answers["brute_scores"])):
        assert len(ids) == max(KS) and set(ids) <= catalog
        assert got_scores == sorted(got_scores, reverse=True)
        expected = np.argsort(-scores[row], kind="stable")[: max(KS)]
        assert ids == [world["products"][i] for i in expected]
        np.testing.assert_allclose(got_scores, scores[row][expected], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(answers["query"], queries, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(answers["candidate"], catalog_embeddings, rtol=1e-6, atol=1e-6)
    n = len(pushed["buyers"])
    expected_rating = np.asarray(
        rating(
            {
                "buyer_id": np.asarray(pushed["buyers"], dtype=object),
                "segment": np.asarray(pushed["segments"], dtype=object),
                "product_id": np.asarray(world["products"][:n], dtype=object),
                "category": np.asarray(catalog_columns(world)["category"][:n], dtype=object),
            }
        )
    ).reshape(-1)
    np.testing.assert_allclose(answers["rating"], expected_rating, rtol=1e-5)


def test_the_catalog_ids_and_the_push_destination_hold_a_complete_copy(world, pushed):
    export = pushed["exports"]["brute"]
    source, destination = export["out"] / "serving_model", export["destination"]
    assert export["result"].properties["pushed_to"] == str(destination)
    assert (source / "assets" / "catalog_ids.txt").read_text().splitlines() == world["products"]

    def files(folder):
        return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}

    assert files(destination) == files(source) and "saved_model.pb" in files(destination)
    assert [p.name for p in destination.parent.iterdir()] == ["recs"]  # no temporary copies left behind


def test_a_push_to_an_fsspec_url_replaces_the_earlier_model(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    from ml_pipeline.stages.pusher import push_folder

    for version in ("v1", "v2"):
        source = tmp_path / version
        (source / "variables").mkdir(parents=True)
        (source / "saved_model.pb").write_text(version)
        (source / "variables" / "variables.index").write_text(version)
        push_folder(source, "memory://bucket/models/recs")
    fs = fsspec.filesystem("memory")
    assert sorted(fs.find("/bucket")) == [
        "/bucket/models/recs/saved_model.pb",
        "/bucket/models/recs/variables/variables.index",
    ]
    assert fs.cat("/bucket/models/recs/saved_model.pb") == b"v2"


def test_a_model_without_a_rating_head_has_no_rating_signature(pushed):
    assert pushed["answers"]["scann_signatures"] == ["candidate_embedding", "query_embedding", "serving_default"]
    assert pushed["exports"]["scann"]["result"].properties["pushed_to"].endswith("serving_model")


def test_scann_agrees_with_brute_force_on_the_top_10(pushed):
    answers = pushed["answers"]
    assert pushed["exports"]["scann"]["result"].properties["retrieval"] == "scann"
    recalls = [len(set(s[:10]) & set(b[:10])) / 10 for s, b in zip(answers["scann_ids"], answers["brute_ids"])]
    assert sum(recalls) / len(recalls) >= 0.9
    [first, *_] = answers["recommend"]
    assert first[0] == answers["brute_ids"][0][0] and len(answers["recommend"]) == 3


def test_a_ranking_model_serves_top_k_by_its_predicted_rating(world, pushed):
    answers = pushed["answers"]
    _, _, rating = keras_models(world, "planted_multitask")
    columns = catalog_columns(world)
    for row, buyer in enumerate(pushed["buyers"][:3]):
        predicted = np.asarray(
            rating(
                {
                    "buyer_id": np.asarray([buyer] * PRODUCTS, dtype=object),
                    "segment": np.asarray([pushed["segments"][row]] * PRODUCTS, dtype=object),
                    "product_id": np.asarray(columns["product_id"], dtype=object),
                    "category": np.asarray(columns["category"], dtype=object),
                }
            )
        ).reshape(-1)
        expected = np.argsort(-predicted, kind="stable")[: max(KS)]
        assert answers["ranking_ids"][row][:10] == [world["products"][i] for i in expected[:10]]
        np.testing.assert_allclose(answers["ranking_scores"][row], predicted[expected], rtol=1e-5)


def test_the_pushed_model_served_over_http_keeps_its_token_its_instance_limit_and_its_k(
    pushed, serving_endpoint, tmp_path
):
    """The brute-force export on the real serving server (SavedModel and buyers lookup; the refusals themselves
    are tested one by one in ``test_serving_server.py``)."""
    from ml_pipeline.serving.requests import ServerOptions

    buyers, segments = pushed["buyers"], pushed["segments"]
    lookup = tmp_path / "buyers.parquet"
    pq.write_table(pa.table({"buyer_id": buyers, "segment": segments}), lookup)
    endpoint = serving_endpoint(
        {"recs": {"path": str(pushed["exports"]["brute"]["destination"]), "version": 1, "buyers": str(lookup)}},
        options=ServerOptions(max_instances=len(buyers), token="t0ken"),
    )
    predict, rows = "/v1/models/recs:predict", [{"buyer_id": b, "segment": s} for b, s in zip(buyers, segments)]

    assert endpoint.call("POST", predict, {"instances": rows}).status == 401
    answer = endpoint.call("POST", predict, {"instances": rows}, token="t0ken")
    assert answer.status == 200, answer.json
    assert [row["product_ids"] for row in answer.json["predictions"]] == pushed["answers"]["brute_ids"]
    too_many = endpoint.call("POST", predict, {"instances": rows + rows[:1]}, token="t0ken")
    assert too_many.status == 400 and too_many.json["errors"][0]["field"] == "instances"

    top = endpoint.call("GET", f"/recommend?buyer_id={buyers[0]}&k=3", token="t0ken")
    assert top.status == 200, top.json
    assert [r["product_id"] for r in top.json["recommendations"]] == pushed["answers"]["brute_ids"][0][:3]
    beyond = endpoint.call("GET", f"/recommend?buyer_id={buyers[0]}&k={max(KS) + 1}", token="t0ken")
    assert beyond.status == 400 and beyond.json["errors"][0]["field"] == "k"
