"""Evaluator: score the trained model on held-out data, next to baselines, and decide whether to bless it.

Held-out data is the ``test`` split when it has rows, else ``eval``.

Retrieval (retrieval and multitask models), per buyer of the held-out split,
against the WHOLE catalog:

* the candidate model embeds every catalog product; each held-out buyer's
  query is embedded from the buyer features of their latest held-out row;
* the exact top-K by dot product is computed in buyer batches (TF matmul +
  ``tf.math.top_k``, which puts the lower index first on ties), so memory
  stays bounded by ``MAX_SCORES_PER_BATCH`` scores whatever the catalog size;
* the relevant set is the distinct products the buyer bought in the
  held-out split; :func:`ml_pipeline.metrics.retrieval_metrics` computes
  Recall@K, NDCG@K, MRR and coverage for every K in ``model.retrieval_k``.

Rating (ranking and multitask): RMSE and MAE of the rating model on every
held-out row, in the target's original units.

Side by side, on the same buyers and rows: the popularity baseline (every
buyer gets the most-bought training products, ``train_count``), the mean
baseline (the training target's mean for every row) and, when
``evaluator.baseline_model_uri`` names one, a baseline model: a Trainer
output folder (``query_model.keras`` ...) or a pushed serving model
(``saved_model.pb`` with ``query_embedding`` ... signatures).

Blessing (``blessing.json``): every threshold must pass; with a baseline
model, the candidate's ``compare_metric`` (default ``recall_at_<largest K>``,
or ``rmse`` for ranking models) must not regress by more than ``tolerance``;
without one, ``first_run_policy`` decides. A disabled evaluator blesses with
the reason "evaluation disabled". Every rule that decided is a reason.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from glob import glob as glob_files
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ml_pipeline import metrics as metric_fns
from ml_pipeline.artifacts import write_json_atomic
from ml_pipeline.data import sources
from ml_pipeline.data.sql import literal
from ml_pipeline.model.inputs import target_values, tower_batch
from ml_pipeline.spec import EvaluatorConfig, PipelineSpec
from ml_pipeline.stages.base import Stage, StageContext, StageFailure, StageResult
from ml_pipeline.stages.example_gen import catalog_path, split_glob

HOLDOUT_SPLITS = ("test", "eval")
MAX_SCORES_PER_BATCH = 16_000_000  # buyers x catalog scores held at once (64 MB of float32)
BUYERS_PER_METRICS_CHUNK = 50_000  # top-K lists held at once before they are folded into the averages
RATING_ROWS_PER_BATCH = 65_536
LOWER_IS_BETTER = ("rmse", "mae")
PASS, FAIL = "✓", "✗"


# -- names and numbers for people ----------------------------------------------------
def metric_label(metric: str) -> str:
    """``recall_at_100`` -> ``Recall@100``, ``rmse`` -> ``RMSE``."""
    names = {"recall": "Recall", "ndcg": "NDCG", "coverage": "Coverage"}
    if "_at_" in metric:
        base, k = metric.split("_at_", 1)
        return f"{names.get(base, base)}@{k}"
    return {"mrr": "MRR", "rmse": "RMSE", "mae": "MAE", "coverage": "Coverage"}.get(metric, metric)


def fmt(value: float, other: float | None = None) -> str:
    """4 significant digits, more when needed to tell ``value`` from ``other``."""
    for digits in (4, 6, 8):
        text = f"{value:.{digits}g}"
        if other is None or value == other or text != f"{other:.{digits}g}":
            return text
    return repr(value)


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER


def default_compare_metric(model_type: str, ks: list[int]) -> str:
    return "rmse" if model_type == "ranking" else f"recall_at_{max(ks)}"


# -- blessing ------------------------------------------------------------------------
@dataclass
class Blessing:
    blessed: bool
    reasons: list[str]
    policy: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"blessed": self.blessed, "reasons": self.reasons, "policy": self.policy}


def bless(
    config: EvaluatorConfig,
    model_type: str,
    ks: list[int],
    candidate: dict[str, float],
    baseline: dict[str, float] | None = None,
    baseline_label: str | None = None,
) -> Blessing:
    """The verdict, from the candidate's metrics and (when there is a baseline model) the baseline's.

    Never undecided: every path ends in blessed or not, with its reasons.
    """
    compare_metric = config.compare_metric or default_compare_metric(model_type, ks)
    policy: dict[str, Any] = {
        "thresholds": [t.model_dump(mode="json") for t in config.thresholds],
        "compare_metric": compare_metric,
        "tolerance": config.tolerance,
        "first_run_policy": config.first_run_policy,
        "baseline_model_uri": config.baseline_model_uri,
    }
    if not config.enabled:
        return Blessing(True, ["evaluation disabled"], {**policy, "decided_by": "disabled"})

    reasons: list[str] = []
    thresholds_pass = True
    for threshold in config.thresholds:
        label, op = metric_label(threshold.metric), threshold.direction()
        value = candidate.get(threshold.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            thresholds_pass = False
            reasons.append(f"{label} is not computed for a {model_type} model {FAIL}")
            continue
        ok = value >= threshold.value if op == ">=" else value <= threshold.value
        thresholds_pass &= ok
        symbol = "≥" if op == ">=" else "≤"
        if not ok:
            symbol = "<" if op == ">=" else ">"
        reasons.append(f"{label} {fmt(value, threshold.value)} {symbol} {fmt(threshold.value, value)} "
                       f"{PASS if ok else FAIL}")
    if not config.thresholds:
        reasons.append("no thresholds set")

    if baseline is not None:
        label = metric_label(compare_metric)
        name = baseline_label or "model"
        mine, theirs = candidate.get(compare_metric), baseline.get(compare_metric)
        if mine is None or theirs is None:
            missing = "the candidate" if mine is None else f"baseline {name}"
            reasons.append(f"{label} vs baseline {name}: {missing} has no {compare_metric} to compare {FAIL}")
            return Blessing(False, reasons, {**policy, "decided_by": "baseline_comparison"})
        delta = mine - theirs
        regression = delta if lower_is_better(compare_metric) else -delta
        compared_ok = regression <= config.tolerance + 1e-12
        text = f"{label} {fmt(mine, theirs)} vs baseline {name} {fmt(theirs, mine)}: {delta:+.4g} "
        text += PASS if compared_ok else f"{FAIL} (worse by more than the tolerance {config.tolerance:g})"
        reasons.append(text)
        return Blessing(thresholds_pass and compared_ok, reasons, {**policy, "decided_by": "baseline_comparison"})

    if config.first_run_policy == "never_bless":
        reasons.append(f"first run, no baseline model: first_run_policy is never_bless {FAIL}")
        return Blessing(False, reasons, {**policy, "decided_by": "first_run_policy"})
    verdict = "blessed" if thresholds_pass else "not blessed"
    reasons.append(f"first run, no baseline model: {verdict} by first_run_policy bless_if_thresholds_pass")
    return Blessing(thresholds_pass, reasons, {**policy, "decided_by": "first_run_policy"})


# -- models --------------------------------------------------------------------------
def load_model_functions(folder: str | Path, description: str):
    """Query/candidate/rating functions of a Trainer output folder or a pushed serving model."""
    from ml_pipeline.serving import ModelFunctions, is_serving_model

    folder = Path(folder).expanduser()
    if is_serving_model(folder):
        return ModelFunctions.from_saved_model(folder), "serving_model"
    for candidate in (folder, folder / "output"):
        if (candidate / "query_model.keras").is_file():
            return ModelFunctions.from_keras(load_trained_models(candidate), description), "trainer_output"
    raise StageFailure(f"{description}: {folder} holds neither a Trainer output (query_model.keras, "
                       "candidate_model.keras) nor a serving SavedModel (saved_model.pb)")


@dataclass
class _KerasModels:
    query: Any
    candidate: Any
    rating: Any = None


def load_trained_models(folder: Path):
    """``ml_pipeline.model.load_trained`` (the Trainer's loader) when it exists, else plain Keras loading."""
    try:
        from ml_pipeline.model import load_trained
    except ImportError:
        load_trained = None
    if load_trained is not None:
        return load_trained(folder)
    import keras

    rating_file = folder / "rating_model.keras"
    return _KerasModels(
        keras.models.load_model(folder / "query_model.keras", compile=False),
        keras.models.load_model(folder / "candidate_model.keras", compile=False),
        keras.models.load_model(rating_file, compile=False) if rating_file.is_file() else None,
    )


def folder_fingerprint(folder: str | Path) -> str:
    """Names, sizes and modification times of a folder's files (cheap; changes when a model is replaced)."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        return f"missing:{folder}"
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return f"files:{digest.hexdigest()}"


# -- retrieval -----------------------------------------------------------------------
def top_k_indices(queries: np.ndarray, catalog: np.ndarray, k: int,
                  max_scores: int = MAX_SCORES_PER_BATCH) -> tuple[np.ndarray, np.ndarray]:
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
        block = tf.constant(np.asarray(queries[start:start + batch], dtype=np.float32))
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

    def __init__(self, ks: list[int], catalog_size: int):
        self.ks, self.catalog_size = list(ks), catalog_size
        self.buyers = 0
        self.sums: dict[str, float] = {}
        self.recommended = {k: np.zeros(catalog_size, dtype=bool) for k in self.ks}

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
        self.buyers += len(relevant)

    def result(self) -> dict[str, float]:
        if not self.buyers:
            return {}
        out = {name: total / self.buyers for name, total in self.sums.items()}
        for k in self.ks:
            out[f"coverage_at_{k}"] = float(self.recommended[k].sum() / max(self.catalog_size, 1))
        out["coverage"] = out[f"coverage_at_{max(self.ks)}"]
        return dict(sorted(out.items()))


def retrieval_scores(functions, buyer_inputs: dict, catalog_inputs: dict, relevant: list[set], ks: list[int],
                     max_scores: int = MAX_SCORES_PER_BATCH) -> dict[str, float]:
    """Full-catalog retrieval metrics of one model for the held-out buyers (relevant sets of catalog rows)."""
    catalog_embeddings = functions.embed_candidates(catalog_inputs)
    accumulator = RetrievalAccumulator(ks, len(catalog_embeddings))
    n = len(relevant)
    for start in range(0, n, BUYERS_PER_METRICS_CHUNK):
        stop = min(n, start + BUYERS_PER_METRICS_CHUNK)
        chunk_inputs = {name: values[start:stop] for name, values in buyer_inputs.items()}
        queries = functions.embed_queries(chunk_inputs)
        top, _ = top_k_indices(queries, catalog_embeddings, max(ks), max_scores)
        accumulator.add(top, relevant[start:stop])
    return accumulator.result()


def popularity_scores(catalog_ids: np.ndarray, train_counts: np.ndarray, relevant: list[set],
                      ks: list[int]) -> dict[str, float]:
    """The popularity baseline: every buyer gets the most-bought training products."""
    k = int(min(max(ks), len(catalog_ids)))
    [top_ids] = metric_fns.popularity_top_ids(catalog_ids, train_counts, k, 1)
    row_of = {pid: row for row, pid in enumerate(catalog_ids)}
    top_rows = np.array([row_of[pid] for pid in top_ids], dtype=np.int64)
    accumulator = RetrievalAccumulator(ks, len(catalog_ids))
    for start in range(0, len(relevant), BUYERS_PER_METRICS_CHUNK):
        chunk = relevant[start:start + BUYERS_PER_METRICS_CHUNK]
        accumulator.add(np.tile(top_rows, (len(chunk), 1)), chunk)
    return accumulator.result()


# -- held-out data ---------------------------------------------------------------------
@dataclass
class Holdout:
    split: str
    rows: int
    glob: str


def choose_holdout(con, examples: Path) -> Holdout:
    counts = {}
    for split in HOLDOUT_SPLITS:
        if not list((examples / split).glob("*.parquet")):
            counts[split] = 0
            continue
        counts[split] = con.execute(f"SELECT count(*) FROM read_parquet({literal(split_glob(examples, split))})"
                                    ).fetchone()[0]
        if counts[split]:
            return Holdout(split, counts[split], split_glob(examples, split))
    raise StageFailure(f"no held-out rows to evaluate on: the test and eval splits are empty ({counts}); "
                       "change split so that eval or test gets rows")


def latest_rows_per_buyer(con, glob: str, columns: list[str]) -> pa.Table:
    """For each held-out buyer: their latest row (by timestamp, then product_id) and their distinct products."""
    order = '"timestamp" DESC NULLS LAST, product_id DESC' if "timestamp" in columns else "product_id DESC"
    return con.sql(
        f"""
        WITH held AS (SELECT * FROM read_parquet({literal(glob)}) WHERE buyer_id IS NOT NULL),
        bought AS (SELECT buyer_id AS __buyer, list(DISTINCT CAST(product_id AS VARCHAR)) AS __relevant
                   FROM held GROUP BY buyer_id),
        latest AS (SELECT * FROM held QUALIFY row_number() OVER (PARTITION BY buyer_id ORDER BY {order}) = 1)
        SELECT latest.*, bought.__relevant FROM latest JOIN bought ON latest.buyer_id = bought.__buyer
        ORDER BY latest.buyer_id
        """
    ).to_arrow_table()


def _column_names(con, glob: str) -> list[str]:
    return [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM read_parquet({literal(glob)})").fetchall()]


def rating_scores(functions, spec: PipelineSpec, glob: str) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, actual) ratings for every held-out row, read in batches."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(sorted(glob_files(glob)), format="parquet")
    predicted, actual = [], []
    for batch in dataset.to_batches(batch_size=RATING_ROWS_PER_BATCH):
        if batch.num_rows == 0:
            continue
        table = pa.Table.from_batches([batch])
        inputs = {**tower_batch(table, spec.features, "product"), **tower_batch(table, spec.features, "buyer")}
        predicted.append(functions.predict_ratings(inputs))
        actual.append(target_values(table))
    if not predicted:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(predicted), np.concatenate(actual)


# -- the stage -------------------------------------------------------------------------
def _baseline_label(config: EvaluatorConfig) -> str:
    if config.baseline_label:
        return config.baseline_label
    path = Path(config.baseline_model_uri.rstrip("/"))
    return path.parent.name if path.name == "output" and path.parent.name else path.name


def _prefixed(prefix: str, values: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}{name}": value for name, value in values.items()}


class Evaluator(Stage):
    name = "Evaluator"
    artifact_type = "ModelEvaluation"
    inputs = ("ExampleGen", "Trainer")
    version = 1

    def config(self, spec: PipelineSpec):
        return {"evaluator": spec.evaluator.model_dump(mode="json"), "retrieval_k": spec.model.retrieval_k,
                "model_type": spec.model.model_type}

    def external_fingerprint(self, spec: PipelineSpec) -> str | None:
        uri = spec.evaluator.baseline_model_uri
        return folder_fingerprint(uri) if uri and spec.evaluator.enabled else None

    def run(self, ctx: StageContext) -> StageResult:
        spec, config = ctx.spec, ctx.spec.evaluator
        model_type, ks = spec.model.model_type, list(spec.model.retrieval_k)
        if not config.enabled:
            blessing = bless(config, model_type, ks, {})
            evaluation = {"enabled": False, "holdout": None, "buyers": 0, "candidate": {}, "popularity": {},
                          "mean_baseline": {}, "baseline_model": None}
            self._write(ctx, evaluation, blessing)
            ctx.log.info("evaluation disabled: blessed without scoring")
            return StageResult("BLESSED — evaluation disabled",
                               {"blessed": True, "reasons": blessing.reasons, "enabled": False})

        examples = ctx.input_path("ExampleGen")
        candidate = load_model_functions(ctx.input_path("Trainer"), "the trained model")[0]
        baseline = baseline_kind = None
        label = None
        if config.baseline_model_uri:
            label = _baseline_label(config)
            baseline, baseline_kind = load_model_functions(config.baseline_model_uri, f"baseline model {label}")

        con = sources.connect()
        try:
            holdout = choose_holdout(con, examples)
            ctx.log.info("evaluating on the %s split (%s rows)", holdout.split, f"{holdout.rows:,}")
            scores = {"candidate": {}, "popularity": {}, "mean_baseline": {}, "baseline": {}}
            has_retrieval = model_type in ("retrieval", "multitask")
            has_rating = model_type in ("ranking", "multitask")
            catalog = pq.read_table(catalog_path(examples)) if has_retrieval else None
            buyers = 0
            if has_retrieval:
                buyers = self._retrieval(ctx, con, holdout, catalog, candidate, baseline, ks, scores)
            if has_rating:
                self._rating(ctx, con, examples, holdout, candidate, baseline, label, scores)
            if not has_retrieval:
                buyers = con.execute(f"SELECT count(DISTINCT buyer_id) FROM read_parquet({literal(holdout.glob)})"
                                     ).fetchone()[0]
        finally:
            con.close()

        baseline_metrics = scores["baseline"] if baseline is not None else None
        blessing = bless(config, model_type, ks, scores["candidate"], baseline_metrics, label)
        evaluation = {
            "enabled": True,
            "model_type": model_type,
            "holdout": holdout.split,
            "rows": holdout.rows,
            "buyers": buyers,
            "ks": ks,
            "catalog_size": catalog.num_rows if catalog is not None else None,
            "candidate": scores["candidate"],
            "popularity": scores["popularity"],
            "mean_baseline": scores["mean_baseline"],
            "baseline_model": None if baseline is None else {
                "label": label, "uri": config.baseline_model_uri, "kind": baseline_kind, "metrics": baseline_metrics},
        }
        self._write(ctx, evaluation, blessing)
        for reason in blessing.reasons:
            ctx.log.info("%s", reason)

        properties: dict[str, Any] = {
            "blessed": blessing.blessed, "reasons": blessing.reasons, "holdout": holdout.split,
            "buyers": buyers, "rows": holdout.rows, "compare_metric": blessing.policy["compare_metric"],
            **scores["candidate"],
            **_prefixed("popularity_", scores["popularity"]),
            **_prefixed("mean_baseline_", scores["mean_baseline"]),
        }
        if baseline is not None:
            properties.update(_prefixed("baseline_", baseline_metrics), baseline_label=label)
        return StageResult(self._summary(blessing, model_type, ks, scores, label), properties)

    # -- parts -------------------------------------------------------------------
    def _retrieval(self, ctx, con, holdout: Holdout, catalog: pa.Table, candidate, baseline, ks, scores) -> int:
        spec = ctx.spec
        catalog_ids = np.asarray(catalog.column("product_id").cast(pa.string()).to_pylist(), dtype=object)
        if len(catalog_ids) == 0:
            raise StageFailure("the catalog is empty: nothing to retrieve")
        row_of = {pid: row for row, pid in enumerate(catalog_ids)}
        buyers_table = latest_rows_per_buyer(con, holdout.glob, _column_names(con, holdout.glob))
        # a held-out product outside the catalog (none, from ExampleGen) is never retrieved but still counts
        relevant = [{row_of.get(pid, -2 - i) for i, pid in enumerate(products)}
                    for products in buyers_table.column("__relevant").to_pylist()]
        buyer_inputs = tower_batch(buyers_table, spec.features, "buyer")
        catalog_inputs = tower_batch(catalog, spec.features, "product")
        ctx.log.info("retrieval over %s products for %s held-out buyers", f"{len(catalog_ids):,}",
                     f"{len(relevant):,}")
        scores["candidate"].update(self._guarded("the trained model", retrieval_scores, candidate, buyer_inputs,
                                                 catalog_inputs, relevant, ks))
        train_counts = np.asarray(catalog.column("train_count").to_numpy(zero_copy_only=False), dtype=np.int64)
        scores["popularity"].update(popularity_scores(catalog_ids, train_counts, relevant, ks))
        if baseline is not None:
            scores["baseline"].update(self._guarded("the baseline model", retrieval_scores, baseline, buyer_inputs,
                                                    catalog_inputs, relevant, ks))
        return len(relevant)

    def _rating(self, ctx, con, examples: Path, holdout: Holdout, candidate, baseline, label, scores) -> None:
        spec = ctx.spec
        if not candidate.has_rating:
            raise StageFailure(f"a {spec.model.model_type} model needs rating_model.keras in the Trainer output")
        predicted, actual = self._guarded("the trained model", rating_scores, candidate, spec, holdout.glob)
        scores["candidate"].update(metric_fns.rating_metrics(predicted, actual))
        train_mean = con.execute(
            f"SELECT avg(coalesce(CAST(target AS DOUBLE), 0)) FROM read_parquet({literal(split_glob(examples, 'train'))})"
        ).fetchone()[0]
        train_mean = float(train_mean or 0.0)
        scores["mean_baseline"].update(metric_fns.rating_metrics(np.full_like(actual, train_mean), actual),
                                       train_mean=train_mean)
        if baseline is not None:
            if baseline.has_rating:
                base_predicted, _ = self._guarded("the baseline model", rating_scores, baseline, spec, holdout.glob)
                scores["baseline"].update(metric_fns.rating_metrics(base_predicted, actual))
            else:
                ctx.log.warning("baseline model %s has no rating head: no RMSE/MAE to compare", label)

    @staticmethod
    def _guarded(what: str, function, *args):
        try:
            return function(*args)
        except KeyError as error:  # inputs the model needs that the features do not provide
            raise StageFailure(f"{what} cannot be scored with this pipeline's features: {error.args[0]}") from None

    @staticmethod
    def _write(ctx, evaluation: dict, blessing: Blessing) -> None:
        write_json_atomic(ctx.output / "evaluation.json", evaluation)
        write_json_atomic(ctx.output / "blessing.json", blessing.to_dict())

    @staticmethod
    def _summary(blessing: Blessing, model_type: str, ks: list[int], scores: dict, label: str | None) -> str:
        parts = []
        candidate, baseline = scores["candidate"], scores["baseline"]
        if model_type in ("retrieval", "multitask"):
            metric = f"recall_at_{max(ks)}"
            text = f"{metric_label(metric)} {fmt(candidate[metric])} vs popularity {fmt(scores['popularity'][metric])}"
            if metric in baseline:
                text += f", baseline {label} {fmt(baseline[metric])}"
            parts.append(text)
        if model_type in ("ranking", "multitask"):
            text = f"RMSE {fmt(candidate['rmse'])} vs mean {fmt(scores['mean_baseline']['rmse'])}"
            if "rmse" in baseline:
                text += f", baseline {label} {fmt(baseline['rmse'])}"
            parts.append(text)
        verdict = "BLESSED" if blessing.blessed else "NOT BLESSED"
        summary = f"{verdict} — {'; '.join(parts)}"
        failed = [reason for reason in blessing.reasons if reason.endswith(FAIL) or f"{FAIL} (" in reason]
        if not blessing.blessed and failed:
            summary += f" ({failed[0]})"
        return summary


def read_blessing(evaluator_output: Path) -> dict[str, Any]:
    return json.loads((Path(evaluator_output) / "blessing.json").read_text())
