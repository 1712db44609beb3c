"""Classical baselines the Evaluator reports beside the model, so a user sees whether the neural model earns
its cost: reported, never used for blessing (the blessing holds the model against popularity and the mean).

* :func:`bias_predictions` — rating models: ``mean + buyer bias + product bias``, fitted on the train split
  by regularised alternating least squares sweeps (each bias shrunk towards 0 by ``BIAS_REGULARISATION``
  pseudo-rows); an unseen buyer or product gets no bias.
* :func:`cooccurrence_top_k` — retrieval models: item-to-item co-occurrence. A buyer's score for a product
  is the sum, over the products they bought in train, of the asymmetric cosine similarity of the two
  products' buyer sets (``C_ij / (n_i^(1-a) n_j^a)``, ``a`` = :data:`POPULARITY_DAMPING`, a product never
  counting as its own neighbour), with popularity breaking ties, so a buyer without train history gets the
  popularity list. It is computed as sparse products, ``(X_b D^(a-1) X^T) (X D^-a)``, over chunks of
  buyers, without forming the product-by-product matrix: memory grows with the train rows and a chunk's
  ``buyers x max(buyers, catalog)`` scores.
  "Small enough" is therefore a bound on the train rows (:data:`CF_MAX_TRAIN_ROWS`, from what it cost on
  the demo generator's data) and on the catalog (:data:`CF_MAX_CATALOG`), past which the baseline is
  skipped and the evaluation says why. EASE would need the inverse of a dense catalog x catalog matrix
  (MovieLens' 9,724 movies: 756 MB of float64), too much for a baseline beside every run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BIAS_REGULARISATION = 10.0
BIAS_SWEEPS = 10
# Its cost grows with the train rows times the held-out buyers: 800,000 rows of the demo generator (32,000
# buyers, 16,000 products) took a minute on two cores, more than a baseline beside every run may cost.
CF_MAX_TRAIN_ROWS = 500_000
CF_MAX_CATALOG = 200_000
CF_SCORES_PER_CHUNK = 16_000_000  # buyers x max(buyers, catalog) floats held at once
# The asymmetric cosine's exponent (Aiolli, 2013): 0 scores P(j | i) (popular j favoured), 1/2 the cosine;
# 1/4 was best of the three on ml-latest-small and the retail sample (bench/quality.py).
POPULARITY_DAMPING = 0.25


def bias_predictions(
    train: pd.DataFrame,
    held_out: pd.DataFrame,
    regularisation: float = BIAS_REGULARISATION,
    sweeps: int = BIAS_SWEEPS,
) -> np.ndarray:
    """Predicted ratings for ``held_out`` rows (``buyer_id``, ``product_id``) from ``train`` rows (with
    ``target``)."""
    target = train["target"].astype(np.float64).fillna(0.0)
    mean = float(target.mean()) if len(target) else 0.0
    buyers, products = train["buyer_id"].astype(str), train["product_id"].astype(str)
    buyer_bias = pd.Series(0.0, index=pd.unique(buyers))
    product_bias = pd.Series(0.0, index=pd.unique(products))
    for _ in range(sweeps):
        residual = target - mean - products.map(product_bias).to_numpy()
        grouped = residual.groupby(buyers.to_numpy())
        buyer_bias = grouped.sum() / (grouped.count() + regularisation)
        residual = target - mean - buyers.map(buyer_bias).to_numpy()
        grouped = residual.groupby(products.to_numpy())
        product_bias = grouped.sum() / (grouped.count() + regularisation)
    predicted = (
        mean
        + held_out["buyer_id"].astype(str).map(buyer_bias).fillna(0.0).to_numpy()
        + held_out["product_id"].astype(str).map(product_bias).fillna(0.0).to_numpy()
    )
    return np.asarray(predicted, dtype=np.float64)


def cf_skip_reason(train_rows: int, catalog_size: int) -> str | None:
    """Why the co-occurrence baseline is not computed for this data, or None when it is."""
    if train_rows > CF_MAX_TRAIN_ROWS:
        return f"{train_rows:,} train rows is over the co-occurrence baseline's limit of {CF_MAX_TRAIN_ROWS:,}"
    if catalog_size > CF_MAX_CATALOG:
        return f"{catalog_size:,} products is over the co-occurrence baseline's limit of {CF_MAX_CATALOG:,}"
    return None


def cooccurrence_top_k(
    train_buyers: np.ndarray,
    train_rows: np.ndarray,
    catalog_size: int,
    held_out_buyers: np.ndarray,
    train_counts: np.ndarray,
    k: int,
    scores_per_chunk: int = CF_SCORES_PER_CHUNK,
    popularity_damping: float = POPULARITY_DAMPING,
):
    """Top-``k`` catalog rows per held-out buyer (an iterator of ``[chunk, k]`` int arrays, in buyer order).

    ``train_buyers`` / ``train_rows``: each train interaction's buyer id and catalog row (rows < 0, outside
    the catalog, are dropped); ``train_counts``: each catalog row's train count (the tie-break).
    """
    from scipy import sparse

    keep = train_rows >= 0
    buyer_codes, buyer_ids = pd.factorize(pd.Series(np.asarray(train_buyers)[keep]).astype(str))
    n_buyers = len(buyer_ids)
    interactions = sparse.csr_matrix(
        (np.ones(int(keep.sum())), (buyer_codes, np.asarray(train_rows)[keep])),
        shape=(n_buyers, catalog_size),
    )
    interactions.sum_duplicates()
    interactions.data[:] = 1.0  # bought at all, however often
    counts = np.asarray(interactions.sum(axis=0)).ravel()
    inverse = np.where(counts > 0, 1.0 / np.maximum(counts, 1.0), 0.0)
    # score_j = sum over bought i of C_ij / (n_i^(1 - a) n_j^a): a = 0 is P(j | i), a = 1/2 the cosine
    left = (interactions @ sparse.diags(inverse ** (1.0 - popularity_damping))).tocsr()
    normalised = (interactions @ sparse.diags(inverse**popularity_damping)).tocsr()
    interactions_t = interactions.T.tocsr()
    # popularity order, scaled below any real difference of cosine sums: it only breaks ties
    rank = np.argsort(np.lexsort((np.arange(catalog_size), -np.asarray(train_counts, dtype=np.float64))))
    tie_break = -1e-7 * rank / max(catalog_size, 1)
    position = pd.Index(buyer_ids).get_indexer(pd.Series(np.asarray(held_out_buyers)).astype(str))
    k = int(min(k, catalog_size))
    chunk = max(1, int(scores_per_chunk // max(n_buyers, catalog_size, 1)))
    for start in range(0, len(position), chunk):
        rows = position[start : start + chunk]
        known = rows >= 0
        scores = np.zeros((len(rows), catalog_size), dtype=np.float64)
        if known.any():
            mine = left[rows[known]]
            dense = np.asarray(((mine @ interactions_t) @ normalised).todense())
            # a product is not its own neighbour: each bought product's self-similarity C_jj / n_j is 1
            bought_row, bought_col = mine.nonzero()
            dense[bought_row, bought_col] -= 1.0
            scores[known] = dense
        scores += tie_break
        if k < catalog_size:
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            top = np.tile(np.arange(catalog_size), (len(rows), 1))
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        yield np.take_along_axis(top, order, axis=1)
