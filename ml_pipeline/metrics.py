"""Retrieval and rating metrics shared by the Trainer (per epoch) and the Evaluator.

Retrieval is evaluated per buyer against the full product catalog: the
relevant set is the distinct products the buyer bought in the held-out
split, and a model's answer is its top-K product ids.

* Recall@K = |top-K ∩ relevant| / |relevant|
* NDCG@K  = DCG of the hits in the top K / ideal DCG for min(|relevant|, K) hits
* MRR     = 1 / rank of the first relevant product (0 if none in the list)
* coverage = distinct products recommended in anyone's top K / catalog size

All are averaged over buyers. The popularity baseline answers every buyer
with the K most-bought training products.

Rating: RMSE and MAE. For the losses and the error metrics a lower value is
better (:data:`LOWER_IS_BETTER`); for every other metric a higher one: the
Evaluator's blessing, the experiments' ranking and the run comparison all
read that from here.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import numpy as np

RATING_METRICS = ("rmse", "mae")  # what only a model with a rating head has
LOWER_IS_BETTER = ("loss", "val_loss", *RATING_METRICS)


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER


def retrieval_metrics(
    top_ids: np.ndarray, relevant: Sequence[set], ks: Sequence[int], catalog_size: int
) -> dict[str, float]:
    """Metrics from each buyer's ranked product ids (rows of ``top_ids``, at least max(ks) long)."""
    top_ids = np.asarray(top_ids)
    n_buyers = len(relevant)
    if n_buyers == 0:
        return {}
    results: dict[str, float] = {}
    max_k = max(ks)
    hits = _hits(top_ids, relevant)
    sizes = np.array([len(r) for r in relevant], dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, max_k + 2))
    # the ideal DCG of n hits, as discounts[:n].sum() (the same sums, bit for bit, looked up per buyer)
    ideal_of = np.array([discounts[:n].sum() for n in range(max_k + 1)])
    for k in ks:
        found = hits[:, :k].sum(axis=1)
        results[f"recall_at_{k}"] = float(np.mean(found / sizes))
        dcg = (hits[:, :k] * discounts[:k]).sum(axis=1)
        ideal = ideal_of[np.minimum(sizes, k).astype(np.int64)]
        results[f"ndcg_at_{k}"] = float(np.mean(dcg / ideal))
        results[f"coverage_at_{k}"] = float(len(np.unique(top_ids[:, :k])) / max(catalog_size, 1))
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    results["mrr"] = float(np.mean(np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)))
    results["coverage"] = results[f"coverage_at_{max_k}"]
    return results


def _hits(top_ids: np.ndarray, relevant: Sequence[set]) -> np.ndarray:
    """``hits[b, j]``: whether ``top_ids[b, j]`` is in ``relevant[b]``. Integer ids (catalog rows) are
    matched as (buyer, id) keys with one sorted search instead of a Python loop over every listed item."""
    n, width = len(relevant), top_ids.shape[1]
    sizes = np.fromiter((len(r) for r in relevant), dtype=np.int64, count=n)
    wanted = None
    if top_ids.dtype.kind in "iu":
        items = list(itertools.chain.from_iterable(relevant))
        if all(isinstance(item, (int, np.integer)) and not isinstance(item, bool) for item in items):
            try:
                wanted = np.array(items, dtype=np.int64) if items else np.zeros(0, dtype=np.int64)
            except OverflowError:  # ids past 64 bits: the loop below
                wanted = None
    half = 1 << 31  # (buyer, id) as one int64 key while ids fit in 32 bits
    if wanted is None or not all(
        -half <= int(a.min(initial=0)) and int(a.max(initial=0)) < half for a in (wanted, top_ids)
    ):
        hits = np.zeros((n, width), dtype=bool)
        for row, wanted_set in enumerate(relevant):
            hits[row] = [item in wanted_set for item in top_ids[row]]
        return hits

    def keys(owner: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return owner * np.int64(2 * half) + (ids.astype(np.int64) + half)

    known = np.unique(keys(np.repeat(np.arange(n, dtype=np.int64), sizes), wanted))
    listed = keys(np.repeat(np.arange(n, dtype=np.int64), width), top_ids.reshape(-1))
    if not len(known):
        return np.zeros((n, width), dtype=bool)
    where = np.minimum(np.searchsorted(known, listed), len(known) - 1)
    return (known[where] == listed).reshape(n, width)


def popularity_top_ids(product_ids: np.ndarray, counts: np.ndarray, k: int, n_buyers: int) -> np.ndarray:
    """The K most-bought products (ties broken by id, for determinism), repeated for every buyer."""
    order = np.lexsort((np.asarray(product_ids).astype(str), -np.asarray(counts)))
    top = np.asarray(product_ids)[order[:k]]
    return np.tile(top, (n_buyers, 1))


def rating_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    errors = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return {"rmse": float(np.sqrt(np.mean(errors**2))), "mae": float(np.mean(np.abs(errors)))}


# -- which split a reported metric was measured on ----------------------------------------
SPLITS = ("train", "eval", "test")
EVAL_PREFIX = "eval_"  # the Trainer's eval-split quality metrics, as the run's final metrics keep them
QUALITY = re.compile(r"^(rmse|mae|mrr|coverage|(recall|ndcg|coverage)_at_\d+)$")
EVALUATOR_PREFIXES = ("popularity_", "mean_baseline_", "bias_baseline_", "cooccurrence_", "baseline_")


def final_metrics(trainer: dict, evaluator: dict) -> dict:
    """A run's final metrics: the Trainer's and the Evaluator's properties in one dict, the Evaluator's
    quality metrics (its held-out split, normally test) under their names and the Trainer's (the eval split,
    at the exported epoch) also under ``eval_<name>``, so neither hides the other."""
    labelled = {f"{EVAL_PREFIX}{name}": value for name, value in trainer.items() if QUALITY.match(name)}
    return {**trainer, **labelled, **evaluator}


def metric_split(name: str, evaluated_on: str | None) -> str | None:
    """The split a final or per-epoch metric was measured on (None: not a metric of a split).

    ``loss`` is the train split's; ``val_*`` and ``eval_*`` the eval split's; a quality metric or a
    baseline's is the Evaluator's held-out split (``evaluated_on``) once it has run, else the Trainer's eval.
    """
    if name == "loss" or name.endswith("_loss") and not name.startswith("val_"):
        return "train"
    if name.startswith(("val_", EVAL_PREFIX)):
        return "eval"
    for prefix in EVALUATOR_PREFIXES:
        if name.startswith(prefix) and QUALITY.match(name[len(prefix) :]):
            return evaluated_on or "test"
    if QUALITY.match(name) or name == "popularity_top10_share":
        return evaluated_on or "eval"
    return None
