"""ScaNN for the serving model's top-K: its parameters chosen from the catalog's size, and checked on it.

``"auto"`` (the model config's default, :class:`ml_pipeline.config.scann.ScannParams`
otherwise):

* under :data:`BRUTE_FORCE_BELOW` products: ScaNN's exact brute force (a tree
  would save nothing);
* up to :data:`TREE_FROM`: anisotropic hashing of every product, the best
  ``reorder`` re-scored exactly;
* from :data:`TREE_FROM`: a tree of about √N leaves first, then hashing and
  re-scoring within the leaves searched.

The leaves searched and the candidates re-scored are search-time settings,
so the searcher is built once and then *checked*: a sample of queries (the
buyer embeddings of the split the Pusher passes, else products' own
embeddings) is answered exactly and by ScaNN, and the search widens along
:func:`ladder` (more leaves, more re-scoring) until recall@K reaches
:data:`CHECK_RECALL` on the sample, a margin over the 0.95 promised
(:data:`TARGET_RECALL`). A catalog where nothing on the ladder reaches it is
served by brute force, exactly, and the settings say so. Whatever was chosen,
with the recall measured, is recorded in the model's ``serving_config.json``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

BRUTE_FORCE_BELOW = 1_000
TREE_FROM = 20_000
TARGET_RECALL = 0.95
CHECK_RECALL = 0.97
SAMPLE_QUERIES = 256
TRAINING_SAMPLE = 250_000


def initial(n: int, k: int) -> dict[str, Any]:
    """The configuration "auto" starts from for ``n`` products and a top-``k``."""
    if n < BRUTE_FORCE_BELOW:
        return {"n": n, "k": k, "mode": "brute_force"}
    settings: dict[str, Any] = {
        "n": n,
        "k": k,
        "mode": "ah",
        "dims_per_block": 2,
        "anisotropic_quantization_threshold": 0.2,
        "reorder": int(min(n, max(10 * k, 250))),
    }
    if n >= TREE_FROM:
        leaves = int(round(math.sqrt(n)))
        settings.update(
            mode="tree_ah",
            num_leaves=leaves,
            num_leaves_to_search=max(1, math.ceil(leaves / 10)),
            training_sample_size=int(min(n, TRAINING_SAMPLE)),
        )
    return settings


def fixed(n: int, k: int, params) -> dict[str, Any]:
    """The configuration a model config's fixed :class:`ScannParams` asks for."""
    settings: dict[str, Any] = {
        "n": n,
        "k": k,
        "mode": "ah",
        "dims_per_block": params.dims_per_block,
        "anisotropic_quantization_threshold": params.anisotropic_quantization_threshold,
        "reorder": int(min(n, max(k, params.reorder))),
    }
    if params.num_leaves is not None:
        leaves = int(min(params.num_leaves, n))
        settings.update(
            mode="tree_ah",
            num_leaves=leaves,
            num_leaves_to_search=int(min(params.num_leaves_to_search, leaves)),
            training_sample_size=int(min(n, TRAINING_SAMPLE)),
        )
    return settings


def ladder(settings: dict[str, Any]) -> list[tuple[int | None, int]]:
    """(leaves to search, candidates re-scored), narrowest first: what "auto" tries until recall is reached."""
    n, reorder = settings["n"], settings["reorder"]
    leaves = settings.get("num_leaves")
    if leaves is None:
        return [(None, min(n, reorder * factor)) for factor in (1, 2, 4, 8)]
    steps = []
    for fraction, factor in ((0.1, 1), (0.2, 1), (0.2, 2), (0.4, 2), (0.7, 4), (1.0, 4)):
        step = (min(leaves, max(1, math.ceil(leaves * fraction))), min(n, reorder * factor))
        if step not in steps:
            steps.append(step)
    return steps


def _builder(db: np.ndarray, k: int, settings: dict[str, Any]):
    from scann import scann_ops

    builder = scann_ops.builder(db, k, "dot_product")
    if settings["mode"] == "brute_force":
        return builder.score_brute_force()
    if settings["mode"] == "tree_ah":
        builder = builder.tree(
            num_leaves=settings["num_leaves"],
            num_leaves_to_search=settings["num_leaves_to_search"],
            training_sample_size=settings["training_sample_size"],
        )
    builder = builder.score_ah(
        settings["dims_per_block"], anisotropic_quantization_threshold=settings["anisotropic_quantization_threshold"]
    )
    return builder.reorder(settings["reorder"])


def exact_top_k(db: np.ndarray, queries: np.ndarray, k: int, batch: int = 32) -> np.ndarray:
    """The exact top-``k`` indices by dot product, a few queries at a time (bounded memory at 1M products)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), batch):
        scores = queries[start : start + batch] @ db.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        out[start : start + batch] = top
    return out


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of the exact top-K that was found."""
    k = exact.shape[1]
    return float(np.mean([len(set(f.tolist()) & set(e.tolist())) / k for f, e in zip(found, exact)]))


def sample_queries(db: np.ndarray, queries: np.ndarray | None, seed: int = 0) -> tuple[np.ndarray, str]:
    """The queries the check uses: a sample of ``queries`` (buyer embeddings), else of the products' own."""
    rng = np.random.default_rng(seed)
    source, kind = (queries, "buyers") if queries is not None and len(queries) else (db, "products")
    picked = rng.choice(len(source), size=min(SAMPLE_QUERIES, len(source)), replace=False)
    return np.ascontiguousarray(source[picked], dtype=np.float32), kind


def search(searcher, queries: np.ndarray, k: int, leaves: int | None, reorder: int | None) -> np.ndarray:
    indices, _ = searcher.search_batched(
        queries, final_num_neighbors=k, pre_reorder_num_neighbors=reorder, leaves_to_search=leaves
    )
    return np.asarray(indices)


def build(embeddings: np.ndarray, k: int, params="auto", queries: np.ndarray | None = None):
    """A ScaNN searcher (TF ops) over ``embeddings`` by dot product, as a ``tf.Module`` of variables, and the
    settings it searches with (``num_leaves_to_search``, ``reorder``; the recall measured on the sample)."""
    db = np.ascontiguousarray(embeddings, dtype=np.float32)
    n, k = len(db), int(min(k, len(db)))
    settings = initial(n, k) if params == "auto" else fixed(n, k, params)
    settings["params"] = "auto" if params == "auto" else "fixed"
    searcher = _builder(db, k, settings).build()
    if settings["mode"] == "brute_force":
        settings["recall"] = 1.0
        return searcher.serialize_to_module(), settings
    sample, kind = sample_queries(db, queries)
    exact = exact_top_k(db, sample, k)
    settings.update(recall_queries=len(sample), recall_queries_from=kind)
    steps = ladder(settings) if params == "auto" else [(settings.get("num_leaves_to_search"), settings["reorder"])]
    for leaves, reorder in steps:
        measured = recall(search(searcher, sample, k, leaves, reorder), exact)
        settings.update(num_leaves_to_search=leaves, reorder=reorder, recall=round(measured, 4))
        if measured >= CHECK_RECALL:
            break
    if params == "auto" and settings["recall"] < CHECK_RECALL:
        # nothing on the ladder is good enough on this catalog: exact, and say why
        settings.update(mode="brute_force", fell_back=f"recall@{k} reached only {settings['recall']:.3f}")
        settings.pop("num_leaves", None)
        settings.update(num_leaves_to_search=None, reorder=None, recall=1.0)
        searcher = _builder(db, k, settings).build()
    return searcher.serialize_to_module(), settings
