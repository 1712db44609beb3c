"""Evaluator: score the trained model on held-out data, next to baselines, and decide whether to bless it.

Held-out data is the ``test`` split when it has rows, else ``eval``.

Retrieval (retrieval and multitask models), per buyer of the held-out split,
against the WHOLE catalog (:mod:`ml_pipeline.scoring`, which the Trainer's
per-epoch metrics use too):

* the candidate model embeds every catalog product; each held-out buyer's
  query is embedded from the buyer features of their latest held-out row;
* the exact top-K by dot product is computed in buyer batches, so memory
  stays bounded whatever the catalog size;
* past ``evaluator.max_buyers`` held-out buyers (default 50,000) a seeded uniform sample of that many
  (an MD5 of ``sample_seed`` and the buyer id) is scored, the same buyers for the model and every
  baseline: the full-catalog top-K costs buyers x products, which grows with the square of the data
  (``buyers`` is the number scored; ``buyer_sample`` / ``held_out_buyers`` say how many there were);
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
(``saved_model.pb`` with ``query_embedding`` ... signatures). Reported only,
never used for blessing (:mod:`ml_pipeline.baselines`): the buyer + product
bias baseline (``bias_baseline``, rating models) and the item-to-item
co-occurrence baseline (``cooccurrence_baseline``, retrieval models; skipped,
with the reason in ``cooccurrence_skipped``, past its size limits).

Collapse: ``collapse.popularity_top10_share`` is the share of held-out buyers
whose top 10 is exactly the popularity top 10 (as a set); over half, the
evaluation's ``warnings`` say so (with the model's coverage).

Blessing (``blessing.json``, :mod:`ml_pipeline.blessing`): every threshold
must pass; with a baseline model, the candidate's ``compare_metric``
(default ``recall_at_<largest K>``, or ``rmse`` for ranking models) must not
regress by more than ``tolerance``; without one, ``first_run_policy``
decides. A disabled evaluator blesses with the rule "evaluation disabled".
Every rule that decided is recorded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from glob import glob as glob_files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ml_pipeline import baselines, scoring
from ml_pipeline import metrics as metric_fns
from ml_pipeline.artifact_types import Examples, Model, ModelEvaluation
from ml_pipeline.artifacts import write_json_atomic
from ml_pipeline.blessing import Blessing, bless, default_compare_metric, fmt, metric_label, naive_baseline_name
from ml_pipeline.config.features import FeatureConfig
from ml_pipeline.config.model import ModelType
from ml_pipeline.data import sources
from ml_pipeline.data.access import DataAccess
from ml_pipeline.data.sql import literal
from ml_pipeline.model.functions import ModelFunctions
from ml_pipeline.model.inputs import target_values, tower_batch
from ml_pipeline.spec import EvaluatorConfig, PipelineSpec
from ml_pipeline.stages.base import Stage, StageContext, StageFailure, StageParams, StageResult

HOLDOUT_SPLITS = ("test", "eval")
RATING_ROWS_PER_BATCH = 65_536
COLLAPSE_K = 10  # the list length compared with popularity's
COLLAPSE_WARNING_SHARE = 0.5  # "most buyers get the popularity list": the Evaluator warns


class EvaluatorParams(StageParams):
    """The blessing policy, and what the model is scored as: its type, its Ks and the features its inputs
    are built from."""

    evaluator: EvaluatorConfig
    retrieval_k: list[int]
    model_type: ModelType
    features: FeatureConfig


# -- models --------------------------------------------------------------------------
def load_model_functions(folder: str | Path, description: str) -> tuple[ModelFunctions, str]:
    """Query/candidate/rating functions of a Trainer output (its folder or the stage folder above it) or a
    pushed serving model, and which of the two it is."""
    from ml_pipeline.serving.model import is_serving_model

    folder = Path(folder).expanduser()
    if is_serving_model(folder):
        return ModelFunctions.from_saved_model(folder), "serving_model"
    for candidate in (folder, folder / "output"):
        if (candidate / Model.FILES["query"]).is_file():
            return ModelFunctions.from_keras(Model(candidate).load(), description), "trainer_output"
    raise StageFailure(
        f"{description}: {folder} holds neither a Trainer output (query_model.keras, "
        "candidate_model.keras) nor a serving SavedModel (saved_model.pb)"
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


# -- held-out data ---------------------------------------------------------------------
@dataclass
class Holdout:
    split: str
    rows: int
    glob: str


def choose_holdout(con, examples: Examples) -> Holdout:
    counts = {}
    for split in HOLDOUT_SPLITS:
        if not examples.has_split(split):
            counts[split] = 0
            continue
        glob = examples.split_glob(split)
        counts[split] = con.execute(f"SELECT count(*) FROM read_parquet({literal(glob)})").fetchone()[0]
        if counts[split]:
            return Holdout(split, counts[split], glob)
    raise StageFailure(
        f"no held-out rows to evaluate on: the test and eval splits are empty ({counts}); "
        "change split so that eval or test gets rows"
    )


def rating_scores(functions: ModelFunctions, features: FeatureConfig, glob: str) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, actual) ratings for every held-out row, read in batches."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(sorted(glob_files(glob)), format="parquet")
    predicted, actual = [], []
    for batch in dataset.to_batches(batch_size=RATING_ROWS_PER_BATCH):
        if batch.num_rows == 0:
            continue
        table = pa.Table.from_batches([batch])
        inputs = {**tower_batch(table, features, "product"), **tower_batch(table, features, "buyer")}
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


class Evaluator(Stage[EvaluatorParams]):
    name = "Evaluator"
    inputs = {"ExampleGen": Examples, "Trainer": Model}
    output = ModelEvaluation
    Params = EvaluatorParams
    version = 1

    def params(self, spec: PipelineSpec) -> EvaluatorParams:
        return EvaluatorParams(
            evaluator=spec.evaluator,
            retrieval_k=spec.model.retrieval_k,
            model_type=spec.model.model_type,
            features=spec.features,
        )

    def external_fingerprint(self, params: EvaluatorParams, access: DataAccess | None) -> str | None:
        uri = params.evaluator.baseline_model_uri
        return folder_fingerprint(uri) if uri and params.evaluator.enabled else None

    def run(self, ctx: StageContext, params: EvaluatorParams) -> StageResult:
        config, model_type, ks = params.evaluator, params.model_type, list(params.retrieval_k)
        if not config.enabled:
            blessing = bless(config, model_type, ks, {})
            evaluation = {
                "enabled": False,
                "holdout": None,
                "buyers": 0,
                "candidate": {},
                "popularity": {},
                "mean_baseline": {},
                "baseline_model": None,
            }
            self._write(ctx, evaluation, blessing)
            ctx.log.info("evaluation disabled: blessed without scoring")
            return StageResult(
                "BLESSED — evaluation disabled", {"blessed": True, "reasons": blessing.reasons, "enabled": False}
            )

        examples = ctx.input(Examples)
        candidate = ModelFunctions.from_keras(ctx.input(Model).load(), "the trained model")
        baseline = baseline_kind = None
        label = None
        if config.baseline_model_uri:
            label = _baseline_label(config)
            baseline, baseline_kind = load_model_functions(config.baseline_model_uri, f"baseline model {label}")

        con = sources.connect()
        try:
            holdout = choose_holdout(con, examples)
            ctx.log.info("evaluating on the %s split (%s rows)", holdout.split, f"{holdout.rows:,}")
            scores: dict[str, dict[str, float]] = {
                "candidate": {},
                "popularity": {},
                "mean_baseline": {},
                "baseline": {},
                "bias_baseline": {},
                "cooccurrence": {},
            }
            notes: dict[str, Any] = {}
            catalog = examples.read_catalog() if model_type.has_retrieval else None
            if catalog is not None:
                buyers = self._retrieval(
                    ctx, params, con, examples, holdout, catalog, candidate, baseline, scores, notes
                )
            else:
                buyers = con.execute(
                    f"SELECT count(DISTINCT buyer_id) FROM read_parquet({literal(holdout.glob)})"
                ).fetchone()[0]
            if model_type.has_rating:
                self._rating(ctx, params, con, examples, holdout, candidate, baseline, label, scores)
        finally:
            con.close()

        baseline_metrics = scores["baseline"] if baseline is not None else None
        compare = config.compare_metric or default_compare_metric(model_type, ks)
        naive = scores["mean_baseline"] if naive_baseline_name(compare) == "mean" else scores["popularity"]
        blessing = bless(config, model_type, ks, scores["candidate"], baseline_metrics, label, naive)
        evaluation = {
            "enabled": True,
            "model_type": str(model_type),
            "holdout": holdout.split,
            "rows": holdout.rows,
            "buyers": buyers,
            "buyer_sample": notes.get("buyer_sample"),
            "ks": ks,
            "catalog_size": catalog.num_rows if catalog is not None else None,
            "candidate": scores["candidate"],
            "popularity": scores["popularity"],
            "mean_baseline": scores["mean_baseline"],
            # reported beside the model so users see whether it earns its cost; never used for blessing
            "bias_baseline": scores["bias_baseline"] or None,
            "cooccurrence_baseline": scores["cooccurrence"] or None,
            "cooccurrence_skipped": notes.get("cooccurrence_skipped"),
            "collapse": notes.get("collapse"),
            "warnings": notes.get("warnings", []),
            "baseline_model": None
            if baseline is None
            else {"label": label, "uri": config.baseline_model_uri, "kind": baseline_kind, "metrics": baseline_metrics},
        }
        self._write(ctx, evaluation, blessing)
        for reason in blessing.reasons:
            ctx.log.info("%s", reason)
        for warning in evaluation["warnings"]:
            ctx.log.warning("%s", warning)

        properties: dict[str, Any] = {
            "blessed": blessing.blessed,
            "reasons": blessing.reasons,
            "holdout": holdout.split,
            "buyers": buyers,
            **({"held_out_buyers": notes["buyer_sample"]["held_out_buyers"]} if "buyer_sample" in notes else {}),
            "rows": holdout.rows,
            "compare_metric": blessing.policy["compare_metric"],
            **scores["candidate"],
            **_prefixed("popularity_", scores["popularity"]),
            **_prefixed("mean_baseline_", scores["mean_baseline"]),
            **_prefixed("bias_baseline_", scores["bias_baseline"]),
            **_prefixed("cooccurrence_", scores["cooccurrence"]),
            **(notes.get("collapse") or {}),
            "warnings": evaluation["warnings"],
        }
        if baseline is not None:
            properties.update(_prefixed("baseline_", baseline_metrics), baseline_label=label)
        return StageResult(self._summary(blessing, model_type, ks, scores, label, holdout.split), properties)

    # -- parts -------------------------------------------------------------------
    def _retrieval(
        self,
        ctx,
        params: EvaluatorParams,
        con,
        examples: Examples,
        holdout: Holdout,
        catalog: pa.Table,
        candidate: ModelFunctions,
        baseline: ModelFunctions | None,
        scores: dict,
        notes: dict,
    ) -> int:
        ks = list(params.retrieval_k)
        catalog_ids = np.asarray(catalog.column("product_id").cast(pa.string()).to_pylist(), dtype=object)
        if len(catalog_ids) == 0:
            raise StageFailure("the catalog is empty: nothing to retrieve")
        config = params.evaluator
        [(held_out_buyers,)] = con.execute(
            f"SELECT count(DISTINCT buyer_id) FROM read_parquet({literal(holdout.glob)})"
        ).fetchall()
        sample = None
        if config.max_buyers is not None and held_out_buyers > config.max_buyers:
            sample = (config.sample_seed, config.max_buyers)
        buyers_table = scoring.latest_rows_per_buyer(con, holdout.glob, sample=sample)
        relevant = scoring.relevant_rows(buyers_table, catalog_ids)
        buyer_inputs = tower_batch(buyers_table, params.features, "buyer")
        catalog_inputs = tower_batch(catalog, params.features, "product")
        notes["buyer_sample"] = {
            "held_out_buyers": int(held_out_buyers),
            "buyers_scored": len(relevant),
            "sampled": sample is not None,
            "max_buyers": config.max_buyers,
            "sample_seed": config.sample_seed,
        }
        ctx.log.info(
            "retrieval over %s products for %s held-out buyers%s",
            f"{len(catalog_ids):,}",
            f"{len(relevant):,}",
            f" (a seeded sample of {held_out_buyers:,}: evaluator.max_buyers)" if sample else "",
        )

        train_counts = np.asarray(catalog.column("train_count").to_numpy(zero_copy_only=False), dtype=np.int64)
        popular_top = scoring.popularity_top_rows(catalog_ids, train_counts, COLLAPSE_K)

        def model_scores(functions: ModelFunctions, reference=None) -> dict[str, float]:
            return scoring.retrieval_scores(
                functions.embed_queries,
                functions.embed_candidates(catalog_inputs),
                buyer_inputs,
                relevant,
                ks,
                reference_top=reference,
            )

        candidate_scores = self._guarded("the trained model", model_scores, candidate, popular_top)
        same = candidate_scores.pop(scoring.SAME_AS_POPULARITY, None)
        scores["candidate"].update(candidate_scores)
        scores["popularity"].update(scoring.popularity_scores(catalog_ids, train_counts, relevant, ks))
        if baseline is not None:
            scores["baseline"].update(self._guarded("the baseline model", model_scores, baseline))
        if same is not None:
            notes["collapse"] = {scoring.SAME_AS_POPULARITY: same}
            if same > COLLAPSE_WARNING_SHARE:
                notes.setdefault("warnings", []).append(
                    f"{same:.0%} of held-out buyers get exactly the popularity top {COLLAPSE_K}: the model "
                    f"has collapsed towards popularity (coverage@{max(ks)} "
                    f"{candidate_scores.get(f'coverage_at_{max(ks)}', 0.0):.2%} of the catalog)"
                )
        self._cooccurrence(ctx, con, examples, buyers_table, catalog_ids, train_counts, relevant, ks, scores, notes)
        return len(relevant)

    def _cooccurrence(self, ctx, con, examples, buyers_table, catalog_ids, train_counts, relevant, ks, scores, notes):
        """The item-to-item co-occurrence baseline on the same buyers (reported, not used for blessing)."""
        train = literal(examples.split_glob("train"))
        [(train_rows,)] = con.execute(f"SELECT count(*) FROM read_parquet({train})").fetchall()
        skipped = baselines.cf_skip_reason(train_rows, len(catalog_ids))
        if skipped:
            notes["cooccurrence_skipped"] = skipped
            ctx.log.info("no co-occurrence baseline: %s", skipped)
            return
        pairs = con.execute(
            "SELECT CAST(buyer_id AS VARCHAR) AS buyer_id, CAST(product_id AS VARCHAR) AS product_id "
            f"FROM read_parquet({train}) WHERE buyer_id IS NOT NULL AND product_id IS NOT NULL"
        ).df()
        row_of = pd.Series(np.arange(len(catalog_ids)), index=pd.Index(catalog_ids))
        rows = pairs["product_id"].map(row_of).fillna(-1).to_numpy(dtype=np.int64)
        held_out = np.asarray(buyers_table.column("buyer_id").cast(pa.string()).to_pylist(), dtype=object)
        chunks = baselines.cooccurrence_top_k(
            pairs["buyer_id"].to_numpy(dtype=object),
            rows,
            len(catalog_ids),
            held_out,
            train_counts,
            max(ks),
        )
        scores["cooccurrence"].update(scoring.top_rows_scores(chunks, relevant, ks, len(catalog_ids)))

    def _rating(
        self,
        ctx,
        params: EvaluatorParams,
        con,
        examples: Examples,
        holdout: Holdout,
        candidate: ModelFunctions,
        baseline: ModelFunctions | None,
        label,
        scores: dict,
    ) -> None:
        if not candidate.has_rating:
            raise StageFailure(f"a {params.model_type} model needs rating_model.keras in the Trainer output")
        predicted, actual = self._guarded("the trained model", rating_scores, candidate, params.features, holdout.glob)
        scores["candidate"].update(metric_fns.rating_metrics(predicted, actual))
        train = literal(examples.split_glob("train"))
        train_mean = con.execute(
            f"SELECT avg(coalesce(CAST(target AS DOUBLE), 0)) FROM read_parquet({train})"
        ).fetchone()[0]
        train_mean = float(train_mean or 0.0)
        scores["mean_baseline"].update(
            metric_fns.rating_metrics(np.full_like(actual, train_mean), actual), train_mean=train_mean
        )
        scores["bias_baseline"].update(
            metric_fns.rating_metrics(self._bias_predictions(con, train, holdout.glob), actual)
        )
        if baseline is not None:
            if baseline.has_rating:
                base_predicted, _ = self._guarded(
                    "the baseline model", rating_scores, baseline, params.features, holdout.glob
                )
                scores["baseline"].update(metric_fns.rating_metrics(base_predicted, actual))
            else:
                ctx.log.warning("baseline model %s has no rating head: no RMSE/MAE to compare", label)

    @staticmethod
    def _bias_predictions(con, train: str, held_out_glob: str) -> np.ndarray:
        """The buyer + product bias baseline's predictions for every held-out row, in the order
        :func:`rating_scores` reads them (the Parquet parts in sorted order, rows as stored)."""
        import pyarrow.dataset as ds

        fitted = con.execute(
            "SELECT CAST(buyer_id AS VARCHAR) AS buyer_id, CAST(product_id AS VARCHAR) AS product_id, "
            f"CAST(target AS DOUBLE) AS target FROM read_parquet({train})"
        ).df()
        held = ds.dataset(sorted(glob_files(held_out_glob)), format="parquet")
        return baselines.bias_predictions(fitted, held.to_table(columns=["buyer_id", "product_id"]).to_pandas())

    @staticmethod
    def _guarded(what: str, function, *args):
        try:
            return function(*args)
        except KeyError as error:  # inputs the model needs that the features do not provide
            raise StageFailure(f"{what} cannot be scored with this pipeline's features: {error.args[0]}") from None

    @staticmethod
    def _write(ctx, evaluation: dict, blessing: Blessing) -> None:
        write_json_atomic(ctx.output / ModelEvaluation.FILES["evaluation"], evaluation)
        blessing.save(ctx.output)

    @staticmethod
    def _summary(
        blessing: Blessing, model_type: ModelType, ks: list[int], scores: dict, label: str | None, holdout: str
    ) -> str:
        parts = []
        candidate, baseline = scores["candidate"], scores["baseline"]
        if model_type.has_retrieval:
            metric = f"recall_at_{max(ks)}"
            text = f"{metric_label(metric)} {fmt(candidate[metric])} vs popularity {fmt(scores['popularity'][metric])}"
            if metric in scores["cooccurrence"]:
                text += f", co-occurrence {fmt(scores['cooccurrence'][metric])}"
            if metric in baseline:
                text += f", baseline {label} {fmt(baseline[metric])}"
            parts.append(text)
        if model_type.has_rating:
            text = f"RMSE {fmt(candidate['rmse'])} vs mean {fmt(scores['mean_baseline']['rmse'])}"
            if "rmse" in scores["bias_baseline"]:
                text += f", biases {fmt(scores['bias_baseline']['rmse'])}"
            if "rmse" in baseline:
                text += f", baseline {label} {fmt(baseline['rmse'])}"
            parts.append(text)
        verdict = "BLESSED" if blessing.blessed else "NOT BLESSED"
        summary = f"{verdict} — {'; '.join(parts)} ({holdout} split)"
        failed = blessing.failed()
        if not blessing.blessed and failed:
            summary += f" ({failed[0].text})"
        return summary
