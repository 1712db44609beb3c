"""The Evaluator past ``evaluator.max_buyers``: a seeded uniform sample of held-out buyers, the same for the
model and every baseline, reported with the number of held-out buyers; and the vectorised hit matching of
the retrieval metrics, which must give the same numbers as matching ids one by one."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.importorskip("keras")

from ml_pipeline import baselines, metrics, scoring  # noqa: E402
from tests.execution.test_evaluator_pusher import (  # noqa: E402
    BUYERS,
    KS,
    PRODUCTS,
    catalog_columns,
    evaluate,
    keras_embed,
    keras_models,
    latest_test_rows,
    make_world,
    naive_retrieval,
)

SAMPLE = 12


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


def sampled_buyers(buyers: list[str], seed: int, n: int) -> list[str]:
    """The buyers the Evaluator's sample keeps, recomputed here: the ``n`` smallest MD5s of ``seed|buyer``."""
    return sorted(sorted(buyers, key=lambda b: hashlib.md5(f"{seed}|{b}".encode()).hexdigest())[:n])


def test_past_max_buyers_the_model_and_every_baseline_are_scored_on_the_same_seeded_sample(world, tmp_path):
    result, out = evaluate(world, tmp_path, evaluator={"max_buyers": SAMPLE, "sample_seed": 3})
    evaluation = json.loads((out / "evaluation.json").read_text())
    buyers, latest, relevant, _ = latest_test_rows(world)
    keep = set(sampled_buyers(buyers, 3, SAMPLE))
    chosen = [i for i, b in enumerate(buyers) if b in keep]
    latest, relevant = [latest[i] for i in chosen], [relevant[i] for i in chosen]

    assert evaluation["buyers"] == SAMPLE == result.properties["buyers"]
    assert evaluation["buyer_sample"] == {
        "held_out_buyers": BUYERS,
        "buyers_scored": SAMPLE,
        "sampled": True,
        "max_buyers": SAMPLE,
        "sample_seed": 3,
    }
    assert result.properties["held_out_buyers"] == BUYERS

    query, candidate, _ = keras_models(world, "planted_multitask")
    catalog = keras_embed(candidate, catalog_columns(world))
    queries = keras_embed(
        query, {"buyer_id": [r["buyer_id"] for r in latest], "segment": [r["segment"] for r in latest]}
    )
    model_top = [[world["products"][i] for i in np.argsort(-(catalog @ q), kind="stable")[: max(KS)]] for q in queries]
    popular = sorted(range(PRODUCTS), key=lambda i: (-world["train_count"][i], world["products"][i]))
    popular_top = [[world["products"][i] for i in popular[: max(KS)]]] * SAMPLE
    for name, value in naive_retrieval(model_top, relevant, KS, PRODUCTS).items():
        assert evaluation["candidate"][name] == pytest.approx(value, abs=1e-6), name
    for name, value in naive_retrieval(popular_top, relevant, KS, PRODUCTS).items():
        assert evaluation["popularity"][name] == pytest.approx(value, abs=1e-6), name

    train = pq.read_table(world["examples"] / "train").to_pandas()
    row_of = pd.Series(np.arange(PRODUCTS), index=pd.Index(world["products"]))
    [co_top] = baselines.cooccurrence_top_k(
        train["buyer_id"].to_numpy(dtype=object),
        train["product_id"].map(row_of).to_numpy(dtype=np.int64),
        PRODUCTS,
        np.array(sorted(keep), dtype=object),
        np.asarray(world["train_count"], dtype=np.int64),
        max(KS),
    )
    co_lists = [[world["products"][i] for i in row] for row in co_top]
    for name, value in naive_retrieval(co_lists, relevant, KS, PRODUCTS).items():
        assert evaluation["cooccurrence_baseline"][name] == pytest.approx(value, abs=1e-6), name


def test_under_max_buyers_every_held_out_buyer_is_scored(world, tmp_path):
    _, out = evaluate(world, tmp_path, evaluator={"max_buyers": BUYERS})
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["buyers"] == BUYERS
    assert evaluation["buyer_sample"]["sampled"] is False


def test_metrics_of_catalog_rows_equal_the_same_metrics_matched_id_by_id():
    rng = np.random.default_rng(7)
    catalog, buyers, ks = 300, 400, [1, 10, 50]
    top = rng.integers(0, catalog, (buyers, 60)).astype(np.int32)
    top[:5, 55:] = -1  # padding past a small catalog is never relevant
    # a product outside the catalog is relevant but never listed (scoring.relevant_rows gives it a row < -1)
    relevant = [set(rng.integers(0, catalog, rng.integers(1, 20)).tolist()) | {-2 - b % 3} for b in range(buyers)]
    as_rows = metrics.retrieval_metrics(top, relevant, ks, catalog)
    as_ids = metrics.retrieval_metrics(
        np.array([[f"p{i}" for i in row] for row in top], dtype=object),
        [{f"p{i}" for i in r} for r in relevant],
        ks,
        catalog,
    )
    assert as_rows == as_ids  # the same numbers to the last bit, not approximately
    accumulated = scoring.RetrievalAccumulator(ks, catalog)
    accumulated.add(top, relevant)
    assert accumulated.result()["recall_at_50"] == as_ids["recall_at_50"]
