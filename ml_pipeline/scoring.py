"""Full-catalog retrieval scoring, shared by the Trainer (per epoch) and the Evaluator.

* :func:`latest_rows_per_buyer`: the held-out buyers, each with the buyer features of their latest row
  (by timestamp, then product id) and the distinct products they bought — the query and the relevant set;
* :func:`top_k_indices`: the exact top-K catalog rows by dot product (TF matmul + ``tf.math.top_k``,
  which puts the lower index first on ties), in buyer batches so that at most ``MAX_SCORES_PER_BATCH``
  scores are held at once, whatever the catalog size;
* :class:`RetrievalAccumulator`: :func:`ml_pipeline.metrics.retrieval_metrics` averaged over buyer chunks,
  so the top-K lists of at most ``BUYERS_PER_METRICS_CHUNK`` buyers are held at once;
* :func:`retrieval_scores` and :func:`popularity_scores`: a model's and the popularity baseline's metrics.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from ml_pipeline import metrics as metric_fns
from ml_pipeline.data.sql import literal

MAX_SCORES_PER_BATCH = 16_000_000  # buyers x catalog scores held at once (64 MB of float32)
BUYERS_PER_METRICS_CHUNK = 50_000  # top-K lists held at once before they are folded into the averages
SAME_AS_POPULARITY = "popularity_top10_share"  # buyers whose top 10 is the popularity top 10, as a share
RELEVANT = "__relevant"  # the column of latest_rows_per_buyer holding each buyer's distinct products


def latest_rows_per_buyer(con, glob: str, sample: tuple[int, int] | None = None) -> pa.Table:
    """For each buyer of the Parquet parts ``glob``: their latest row and their distinct products
    (``__relevant``), ordered by buyer id.

    ``sample`` ``(seed, n)`` keeps ``n`` buyers chosen by a seeded hash of their id (deterministic).
    """
    columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM read_parquet({literal(glob)})").fetchall()]
    order = '"timestamp" DESC NULLS LAST, product_id DESC' if "timestamp" in columns else "product_id DESC"
    held = f"SELECT * FROM read_parquet({literal(glob)}) WHERE buyer_id IS NOT NULL"
    if sample is not None:
        seed, n = sample
        held = (
            f"{held} AND buyer_id IN (SELECT DISTINCT buyer_id FROM read_parquet({literal(glob)}) "
            f"ORDER BY md5(concat({literal(str(seed))}, '|', buyer_id)) LIMIT {int(n)})"
        )
    result = con.sql(
        f"""
        WITH held AS ({held}),
        bought AS (SELECT buyer_id AS __buyer, list(DISTINCT CAST(product_id AS VARCHAR)) AS {RELEVANT}
                   FROM held GROUP BY buyer_id),
        latest AS (SELECT * FROM held QUALIFY row_number() OVER (PARTITION BY buyer_id ORDER BY {order}) = 1)
        SELECT latest.*, bought.{RELEVANT} FROM latest JOIN bought ON latest.buyer_id = bought.__buyer
        ORDER BY latest.buyer_id
        """
    )
    return _arrow_table(result)


def _arrow_table(result) -> pa.Table:
    """A DuckDB relation as an Arrow table (``to_arrow_table`` in DuckDB 2, ``arrow`` before)."""
    for method in ("to_arrow_table", "fetch_arrow_table"):
        if hasattr(result, method):
            return getattr(result, method)()
    return result.arrow()


def relevant_rows(buyers: pa.Table, catalog_ids: np.ndarray) -> list[set]:
    """Each buyer's relevant products as catalog rows; a product outside the catalog (none, from
    ExampleGen) gets a row of its own that is never retrieved, so it still counts as missed."""
    row_of = {pid: row for row, pid in enumerate(catalog_ids)}
    return [
        {row_of.get(pid, -2 - i) for i, pid in enumerate(products)} for products in buyers.column(RELEVANT).to_pylist()
    ]


def top_k_indices(
    queries: np.ndarray, catalog: np.ndarray, k: int, max_scores: int = MAX_SCORES_PER_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` catalog rows by dot product for each query: (indices int32, scores), best first.

    Buyers are processed in batches of ``max_scores // catalog size`` so the
    score matrix never exceeds ``max_scores`` floats.
    """
    import tensorflow as tf

    k = int(min(k, len(catalog)))
    catalog_t = tf.constant(np.asarray(catalog, dtype=np.float32))
    batch = max(1, int(max_scores // max(len(catalog), 1)))
    indices, scores = [], []
    for start in range(0, len(queries), batch):
        block = tf.constant(np.asarray(queries[start : start + batch], dtype=np.float32))
        values, idx = tf.math.top_k(tf.matmul(block, catalog_t, transpose_b=True), k=k)
        indices.append(idx.numpy())
        scores.append(values.numpy())
    if not indices:
        return np.zeros((0, k), dtype=np.int32), np.zeros((0, k), dtype=np.float32)
    return np.concatenate(indices), np.concatenate(scores)


class RetrievalAccumulator:
    """Averages :func:`ml_pipeline.metrics.retrieval_metrics` over buyer chunks.

    Recall, NDCG and MRR are means over buyers, so chunk means weighted by
    chunk size give the overall mean; coverage (distinct products in anyone's
    top K) is kept as a set of catalog rows per K across chunks.
    """

    def __init__(self, ks: list[int], catalog_size: int, reference_top: np.ndarray | None = None):
        self.ks, self.catalog_size = list(ks), catalog_size
        self.buyers = 0
        self.sums: dict[str, float] = {}
        self.recommended = {k: np.zeros(catalog_size, dtype=bool) for k in self.ks}
        # the popularity top-N rows: buyers whose own top N is that same set are counted (collapse)
        self.reference = None if reference_top is None else np.sort(np.asarray(reference_top))
        self.same_as_reference = 0

    def add(self, top: np.ndarray, relevant: list[set]) -> None:
        if not relevant:
            return
        max_k = max(self.ks)
        if top.shape[1] < max_k:  # a catalog smaller than K: pad with a row that is never relevant
            top = np.pad(top, ((0, 0), (0, max_k - top.shape[1])), constant_values=-1)
        chunk = metric_fns.retrieval_metrics(top, relevant, self.ks, self.catalog_size)
        for name, value in chunk.items():
            if not name.startswith("coverage"):
                self.sums[name] = self.sums.get(name, 0.0) + value * len(relevant)
        for k in self.ks:
            rows = top[:, :k].reshape(-1)
            self.recommended[k][rows[rows >= 0]] = True
        if self.reference is not None:
            mine = np.sort(top[:, : len(self.reference)], axis=1)
            self.same_as_reference += int((mine == self.reference).all(axis=1).sum())
        self.buyers += len(relevant)

    def result(self) -> dict[str, float]:
        if not self.buyers:
            return {}
        out = {name: total / self.buyers for name, total in self.sums.items()}
        for k in self.ks:
            out[f"coverage_at_{k}"] = float(self.recommended[k].sum() / max(self.catalog_size, 1))
        out["coverage"] = out[f"coverage_at_{max(self.ks)}"]
        if self.reference is not None:
            out[SAME_AS_POPULARITY] = self.same_as_reference / self.buyers
        return dict(sorted(out.items()))


def retrieval_scores(
    embed_queries: Callable[[dict], np.ndarray],
    catalog_embeddings: np.ndarray,
    buyer_inputs: dict[str, np.ndarray],
    relevant: list[set],
    ks: list[int],
    max_scores: int = MAX_SCORES_PER_BATCH,
    reference_top: np.ndarray | None = None,
) -> dict[str, float]:
    """Full-catalog retrieval metrics of one model: its queries (``embed_queries`` of the buyers' inputs)
    against ``catalog_embeddings``, for buyers whose relevant sets are catalog rows. With ``reference_top``
    (the popularity top-N rows), also the share of buyers whose top N is that set (``SAME_AS_POPULARITY``)."""
    accumulator = RetrievalAccumulator(ks, len(catalog_embeddings), reference_top)
    n = len(relevant)
    for start in range(0, n, BUYERS_PER_METRICS_CHUNK):
        stop = min(n, start + BUYERS_PER_METRICS_CHUNK)
        queries = embed_queries({name: values[start:stop] for name, values in buyer_inputs.items()})
        top, _ = top_k_indices(queries, catalog_embeddings, max(ks), max_scores)
        accumulator.add(top, relevant[start:stop])
    return accumulator.result()


def popularity_top_rows(catalog_ids: np.ndarray, train_counts: np.ndarray, k: int) -> np.ndarray:
    """The catalog rows of the ``k`` most-bought training products, best first."""
    k = int(min(k, len(catalog_ids)))
    [top_ids] = metric_fns.popularity_top_ids(catalog_ids, train_counts, k, 1)
    row_of = {pid: row for row, pid in enumerate(catalog_ids)}
    return np.array([row_of[pid] for pid in top_ids], dtype=np.int64)


def top_rows_scores(chunks, relevant: list[set], ks: list[int], catalog_size: int) -> dict[str, float]:
    """Retrieval metrics of ranked catalog rows given chunk by chunk, in the order of ``relevant``."""
    accumulator = RetrievalAccumulator(ks, catalog_size)
    start = 0
    for top in chunks:
        accumulator.add(top, relevant[start : start + len(top)])
        start += len(top)
    return accumulator.result()


def popularity_scores(
    catalog_ids: np.ndarray, train_counts: np.ndarray, relevant: list[set], ks: list[int]
) -> dict[str, float]:
    """The popularity baseline: every buyer gets the most-bought training products."""
    top_rows = popularity_top_rows(catalog_ids, train_counts, max(ks))
    accumulator = RetrievalAccumulator(ks, len(catalog_ids))
    for start in range(0, len(relevant), BUYERS_PER_METRICS_CHUNK):
        chunk = relevant[start : start + BUYERS_PER_METRICS_CHUNK]
        accumulator.add(np.tile(top_rows, (len(chunk), 1)), chunk)
    return accumulator.result()
