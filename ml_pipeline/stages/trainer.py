"""Trainer: build the models from the Transform artifact, train them, report every epoch, export them.

The models (:mod:`ml_pipeline.model.build`) take raw feature values, so
the exported ``.keras`` files carry the transform. Training is a custom
loop (:mod:`ml_pipeline.model.training`) over the splits as
:mod:`ml_pipeline.model.data` streams them from their Parquet parts in
bounded chunks (memory independent of the number of rows), under the ``tf.distribute`` strategy that
:mod:`ml_pipeline.model.devices` chooses from the GPUs requested and visible.

After every epoch: the train and validation (eval split) losses, Recall@K
of the query/candidate models for every K of ``model.retrieval_k`` over
the FULL catalog for up to ``training.eval_max_buyers`` eval buyers (a
deterministic sample; each buyer's query from their latest eval row, the
relevant set their distinct eval products, as the Evaluator does),
RMSE/MAE of the rating model on the eval split in the target's units, and
per part (buyer tower, product tower, rating head) weight statistics (L1,
L2 norm, mean, std, min, max), the gradient norm on a fixed training batch
and 20-bin weight and gradient histograms (under ``"histograms"``). They go
to ``ctx.reporter.epoch_completed`` and ``history.json``.

Early stopping (``min_delta``, ``patience``) watches the eval split's
Recall@<largest K> (retrieval, multitask) or RMSE (ranking), or
``early_stopping.monitor``, and restores the best epoch's weights before export. With
``model.weight_averaging`` (ranking's default) every epoch is evaluated, kept and exported as its moving average.
The untrained model (epoch 0) is a candidate too: a retrieval model with the product
prior ranks by popularity before training, a rating head starts at the mean; when no
epoch beats it on eval, it is what is exported (and the Evaluator's naive-baseline
rule then refuses to bless it). A retrieval model with the product prior then has the prior's learned
weight scaled by the factor the eval split's Recall@K likes best (``prior_weight_factor`` in the summary).

Resume: after every epoch the weights, the optimizer state, the epoch, the
history and the early-stopping state are checkpointed to ``ctx.work``
(before the epoch is reported). A later attempt of the same run (after a
crash or a kill) continues from the next epoch (resume is at epoch
granularity: an epoch's shuffle is a function of the seed and the epoch, so
the resumed epochs read the rows in the order an uninterrupted run would); a checkpoint written for a
different config or different inputs is ignored. A successful run removes
its checkpoint.

Output (``output/``): ``query_model.keras``, ``candidate_model.keras``,
``rating_model.keras`` (ranking, multitask), ``history.json`` (one entry per
epoch), ``trainer_summary.json`` (devices, strategy, epochs, early stop,
best epoch, parameter counts as built, examples/s).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ml_pipeline import metrics as metric_fns
from ml_pipeline import scoring
from ml_pipeline.artifact_types import Examples, Model, TransformGraph
from ml_pipeline.artifacts import fingerprint, write_json_atomic
from ml_pipeline.config.features import FeatureConfig
from ml_pipeline.config.model import ModelConfig, parameter_counts
from ml_pipeline.model.checkpoint import Checkpoint, CheckpointError, LoopState
from ml_pipeline.model.devices import Placement, choose_strategy
from ml_pipeline.model.inputs import tower_inputs
from ml_pipeline.spec import PipelineSpec, TrainingParams
from ml_pipeline.stages.base import Stage, StageContext, StageFailure, StageParams, StageResult

if TYPE_CHECKING:
    from ml_pipeline.model.data import TrainingData

__all__ = ["Placement", "Trainer", "TrainerParams", "choose_strategy", "optimizer_settings"]

GRADIENT_BATCH_ROWS = 1024
STREAM_SPLITS = (
    True  # the splits streamed from Parquet in bounded chunks; False loads them whole (the benchmark's baseline)
)
HEADLINE_METRICS = ("loss", "val_loss", *metric_fns.RATING_METRICS)  # with recall_at_<K>: what the summary shows


class TrainerParams(StageParams):
    """The model, how it is trained, and the features its towers read."""

    model: ModelConfig
    training: TrainingParams
    features: FeatureConfig


# -- the stage ------------------------------------------------------------------------------
def _scalar(value) -> float:
    value = float(value)
    return value if math.isfinite(value) else float("nan")


class Trainer(Stage[TrainerParams]):
    name = "Trainer"
    inputs = {"ExampleGen": Examples, "Transform": TransformGraph}
    output = Model
    Params = TrainerParams
    version = 1

    def params(self, spec: PipelineSpec) -> TrainerParams:
        return TrainerParams(model=spec.model, training=spec.training, features=spec.features)

    def run(self, ctx: StageContext, spec: TrainerParams) -> StageResult:
        placement = choose_strategy(spec.training.hardware, ctx.log)  # fails early on a missing GPU
        import keras

        from ml_pipeline.model.build import build_models, set_product_prior
        from ml_pipeline.model.data import load_training_data
        from ml_pipeline.model.training import Objective, Steps, make_optimizer

        if placement.note:
            ctx.log.warning("%s", placement.note)
        ctx.log.info("training with %s on %s", placement.name, ", ".join(placement.devices))
        training, model_config = spec.training, spec.model
        keras.utils.set_random_seed(training.seed)

        transform = ctx.input(TransformGraph).load()
        if model_config.has_rating_head and transform.target is None:
            raise StageFailure(
                "features.target: a ranking or multitask model needs a target; the Transform "
                "artifact has no target statistics"
            )
        data = load_training_data(
            ctx.input(Examples), spec.features, model_config, training, transform.target, ctx.log, STREAM_SPLITS
        )
        ctx.log.info(
            "%s train rows, %s eval rows, %s catalog products",
            f"{data.train_rows:,}",
            f"{data.eval_rows:,}",
            f"{len(data.catalog_ids):,}",
        )

        optimizer_name, learning_rate = optimizer_settings(spec)
        weights = model_config.loss_weights
        with placement.strategy.scope():
            built = build_models(transform, model_config)
            if model_config.product_bias:
                set_product_prior(built.candidate, transform, dict(zip(data.catalog_ids, data.catalog_counts)))
            objective = Objective(
                built,
                model_config.model_type,
                weights.retrieval if weights else 1.0,
                weights.rating if weights else 1.0,
                model_config.temperature,
            )
            optimizer = make_optimizer(model_config, learning_rate, optimizer_name)
            optimizer.build(objective.trainable_variables)
        steps = Steps(objective, optimizer, placement.strategy)

        key = fingerprint(
            spec.model_dump(mode="json"),
            {name: artifact.fingerprint for name, artifact in ctx.inputs.items()},
            self.version,
        )
        checkpoint = Checkpoint(ctx.work, key)
        loop = self._restore(ctx, spec, checkpoint, objective, optimizer)
        resumed_from = loop.epoch or None
        watching, untrained, quality = self._train(ctx, spec, data, objective, optimizer, steps, checkpoint, loop)

        restored = False
        if watching and untrained is not None and not _beats(loop, untrained[0]):
            # no epoch beat the untrained model on eval: export it (for retrieval with a product prior it
            # ranks by popularity, for ranking it starts at the mean), rather than an epoch that is worse
            self._assign(objective.all_weights, untrained[1])
            restored, loop.best_epoch = True, 0
            ctx.log.info(
                "no epoch beat the untrained model's %s %.4g on the eval split: exporting the untrained model",
                loop.monitor,
                untrained[0],
            )
        elif watching and loop.best_epoch is not None and loop.best_epoch != loop.epoch:
            try:
                best = checkpoint.arrays(checkpoint.best_weights_file())
            except CheckpointError as error:
                raise StageFailure(str(error)) from None
            self._assign(objective.all_weights, best)
            restored = True
            ctx.log.info("restored the weights of the best epoch (%d)", loop.best_epoch)
        if not restored:  # the last epoch, as it was evaluated
            optimizer.finalize_variable_values(objective.trainable_variables)
        exported_epoch = loop.best_epoch if restored else loop.epoch
        final = next((h for h in loop.history if h["epoch"] == exported_epoch), untrained[2] if untrained else {})
        final = {k: v for k, v in final.items() if isinstance(v, (int, float)) and k != "epoch"}
        if watching and exported_epoch and loop.monitor and loop.monitor.startswith("recall_at_"):
            final.update(self._calibrate(ctx, objective.built, quality, loop.monitor))

        self._export(
            ctx, spec, built, loop, placement, data, learning_rate, restored, exported_epoch, resumed_from, final
        )
        checkpoint.clear()
        examples_per_second = round(loop.examples / loop.train_seconds, 1) if loop.train_seconds else None
        properties = {
            **{k: v for k, v in final.items() if k in HEADLINE_METRICS or k.startswith("recall_at_")},
            "epochs_run": loop.epoch,
            "best_epoch": loop.best_epoch,
            "early_stopped_epoch": loop.stopped_at,
            "examples_per_second": examples_per_second,
            "devices": placement.devices,
            "strategy": placement.name,
        }
        return StageResult(self._summary(loop, restored, final, model_config), properties)

    # -- parts ---------------------------------------------------------------------------------
    def _restore(self, ctx, spec: TrainerParams, checkpoint: Checkpoint, objective, optimizer):
        """The loop state of an earlier attempt's checkpoint (its weights and optimizer state restored), if any."""
        state = checkpoint.load(ctx.log)
        if state is None:
            return LoopState()
        self._assign(objective.all_weights, checkpoint.arrays(state["weights"]))
        self._assign(optimizer.variables, checkpoint.arrays(state["optimizer"]))
        loop = LoopState(**{k: state[k] for k in LoopState.__dataclass_fields__ if k in state})
        ctx.log.info(
            "resuming from the checkpoint of epoch %d of %d: continuing at epoch %d",
            loop.epoch,
            spec.training.epochs,
            loop.epoch + 1,
        )
        # The checkpoint is written before an epoch is reported, so a crash in
        # between would lose that epoch's report: report the restored history
        # again (reporters treat a repeated epoch as an update).
        for entry in loop.history:
            metrics = {k: v for k, v in entry.items() if k != "epoch"}
            ctx.reporter.epoch_completed(entry["epoch"], spec.training.epochs, metrics)
        return loop

    def _train(
        self,
        ctx,
        spec: TrainerParams,
        data: TrainingData,
        objective,
        optimizer,
        steps,
        checkpoint: Checkpoint,
        loop: LoopState,
    ) -> tuple[bool, tuple | None, _Quality]:
        """Run the remaining epochs: whether early stopping watched the eval split, the untrained
        model's (watched value, weights, eval metrics) on a fresh start, and the per-epoch metrics."""
        import tensorflow as tf

        from ml_pipeline.model.training import averaged_weights

        training = spec.training
        early = training.early_stopping
        current = {"epoch": loop.epoch + 1}
        train_ds = steps.distribute(
            data.train.batches(
                training.batch_size,
                seed=training.seed,
                epoch=lambda: current["epoch"],
                drop_remainder=data.train_rows >= 2 * training.batch_size,
            )
        )
        eval_ds = steps.distribute(data.eval.batches(training.batch_size)) if data.eval is not None else None
        watching = early.enabled and eval_ds is not None
        gradient_batch = {
            name: tf.constant(values, dtype=tf.string if values.dtype == object else None)
            for name, values in data.train.head(GRADIENT_BATCH_ROWS).items()
        }
        quality = _Quality(objective.built, data, spec.model)
        monitor = watched_metric(spec, quality)
        untrained = None  # (its watched value, weights, eval metrics): epoch 0, a candidate too
        if watching and loop.epoch == 0 and monitor in (initial := quality.metrics()):
            untrained = (initial[monitor], [np.asarray(v.numpy()) for v in objective.all_weights], initial)

        for epoch in range(loop.epoch + 1, training.epochs + 1):
            if loop.stopped_at is not None:
                break
            current["epoch"] = epoch
            started = time.perf_counter()
            metrics: dict[str, Any] = {k: _scalar(v) for k, v in steps.run_epoch(train_ds, steps.train_step).items()}
            seconds = time.perf_counter() - started
            loop.train_seconds += seconds
            loop.examples += data.train_rows
            with averaged_weights(optimizer, objective.trainable_variables) as averaged:
                if eval_ds is not None:
                    val = steps.run_epoch(eval_ds, steps.eval_step)
                    metrics.update({f"val_{name}": _scalar(value) for name, value in val.items()})
                metrics.update(quality.metrics())
                evaluated = [np.asarray(v.numpy()) for v in objective.all_weights] if averaged else None
            metrics["epoch_seconds"] = round(seconds, 4)
            metrics["examples_per_second"] = round(data.train_rows / max(seconds, 1e-9), 1)
            metrics.update(self._weight_report(objective, steps, gradient_batch))

            improved = loop.record(
                epoch,
                metrics,
                early.min_delta,
                early.patience if watching else None,
                monitor,
                higher_is_better=not (monitor.endswith("loss") or metric_fns.lower_is_better(monitor)),
            )
            current_weights = [np.asarray(v.numpy()) for v in objective.all_weights]
            evaluated = evaluated or current_weights
            # checkpoint first: whatever happens after this, the epoch is not lost
            checkpoint.save(
                loop.to_dict(),
                current_weights,
                [np.asarray(v.numpy()) for v in optimizer.variables],
                evaluated if improved else None,
            )
            ctx.log.info("epoch %d/%d: %s", epoch, training.epochs, _brief(metrics))
            ctx.reporter.epoch_completed(epoch, training.epochs, metrics)
            if loop.stopped_at is not None:
                ctx.log.info(
                    "early stop at epoch %d: %s did not improve by more than %g for %d epochs (best %.4g at epoch %d)",
                    epoch,
                    monitor,
                    early.min_delta,
                    early.patience,
                    loop.best_value,
                    loop.best_epoch,
                )
        return watching, untrained, quality

    def _export(
        self,
        ctx,
        spec: TrainerParams,
        built,
        loop: LoopState,
        placement: Placement,
        data: TrainingData,
        learning_rate: float,
        restored: bool,
        exported_epoch: int,
        resumed_from: int | None,
        final: dict,
    ) -> None:
        from ml_pipeline.model.build import built_parameter_counts

        out, files = ctx.output, Model.FILES
        built.query.save(out / files["query"])
        built.candidate.save(out / files["candidate"])
        if built.rating is not None:
            built.rating.save(out / files["rating"])
        write_json_atomic(out / files["history"], loop.history)
        configured = parameter_counts(spec.model, spec.features)
        write_json_atomic(
            out / files["summary"],
            {
                "model_type": spec.model.model_type,
                "devices": placement.devices,
                "strategy": placement.name,
                "replicas": placement.strategy.num_replicas_in_sync,
                "placement_note": placement.note or None,
                "epochs_requested": spec.training.epochs,
                "epochs_run": loop.epoch,
                "early_stopped_epoch": loop.stopped_at,
                "best_epoch": loop.best_epoch,
                "early_stopping_monitor": loop.monitor,
                "best_value": loop.best_value,
                "restored_best_weights": restored,
                "exported_epoch": exported_epoch,
                "resumed_from_epoch": resumed_from,
                "train_rows": data.train_rows,
                "eval_rows": data.eval_rows,
                "catalog_size": len(data.catalog_ids),
                "batch_size": spec.training.batch_size,
                "learning_rate": learning_rate,
                "optimizer": optimizer_settings(spec)[0],
                "train_seconds": round(loop.train_seconds, 3),
                "examples_per_second": round(loop.examples / loop.train_seconds, 1) if loop.train_seconds else None,
                "parameters": built_parameter_counts(built),
                "configured_parameters": {
                    "towers": {
                        t: {k: configured["towers"][t][k] for k in ("embedding_params", "dense_params", "total")}
                        for t in ("buyer", "product")
                    },
                    "rating_head": configured.get("rating_head", {}).get("total"),
                    "total": configured["total"],
                },
                "inputs": {
                    "query": sorted(tower_inputs(spec.features, "buyer")),
                    "candidate": sorted(tower_inputs(spec.features, "product")),
                },
                "final_metrics": final,
            },
        )

    @staticmethod
    def _calibrate(ctx, built, quality: _Quality, monitor: str) -> dict[str, float]:
        """The exported model's eval metrics after its product prior's weight is calibrated on the eval
        split (:func:`ml_pipeline.model.build.calibrate_prior_weight`), with ``prior_weight_factor``."""
        from ml_pipeline.model.build import calibrate_prior_weight

        chosen = calibrate_prior_weight(built.candidate, quality.metrics, monitor) if quality.retrieval else None
        if chosen is None:
            return {}
        factor, metrics = chosen
        ctx.log.info("product prior weight x%g on the eval split: %s %.4g", factor, monitor, metrics[monitor])
        return {**metrics, "prior_weight_factor": factor}

    @staticmethod
    def _assign(variables, values) -> None:
        if len(variables) != len(values):
            raise StageFailure(f"the checkpoint holds {len(values)} arrays for {len(variables)} variables")
        for variable, value in zip(variables, values):
            variable.assign(value)

    @staticmethod
    def _weight_report(objective, steps, gradient_batch) -> dict[str, Any]:
        from ml_pipeline.model.training import value_statistics

        gradients = steps.gradients(gradient_batch)
        by_variable = {id(v): g for v, g in zip(objective.trainable_variables, gradients)}
        scalars: dict[str, Any] = {}
        histograms: dict[str, dict] = {"weights": {}, "gradients": {}}
        for part, model in objective.parts.items():
            stats, histogram = value_statistics(model.weights)
            scalars.update({f"{part}_weight_{name}": value for name, value in stats.items()})
            histograms["weights"][part] = histogram
            grad_stats, grad_histogram = value_statistics([by_variable.get(id(v)) for v in model.trainable_variables])
            if grad_stats:
                scalars[f"{part}_grad_norm"] = grad_stats["l2"]
                histograms["gradients"][part] = grad_histogram
        scalars["histograms"] = histograms
        return scalars

    @staticmethod
    def _summary(loop: LoopState, restored: bool, final: dict, model_config) -> str:
        text = f"{loop.epoch} epoch{'s' if loop.epoch != 1 else ''}"
        if loop.stopped_at is not None:
            text += f" (early stop at {loop.stopped_at}, best {loop.best_epoch})"
        elif restored:
            text += f" (best {loop.best_epoch})"
        parts = []
        if model_config.has_retrieval:
            k = max(model_config.retrieval_k)
            if f"recall_at_{k}" in final:
                parts.append(f"Recall@{k} {final[f'recall_at_{k}']:.3g}")
        if model_config.has_rating_head and "rmse" in final:
            parts.append(f"RMSE {final['rmse']:.3g}")
        if not parts and "val_loss" in final:
            parts.append(f"val_loss {final['val_loss']:.4g}")
        return ", ".join([text, *parts]) + (" (eval split)" if parts else "")


def _beats(loop: LoopState, untrained: float) -> bool:
    """Whether the best epoch is strictly better than the untrained model on the watched metric."""
    if loop.best_value is None or loop.monitor is None:
        return True
    higher = not (loop.monitor.endswith("loss") or metric_fns.lower_is_better(loop.monitor))
    return loop.best_value > untrained if higher else loop.best_value < untrained


def _brief(metrics: dict) -> str:
    keys = [k for k in metrics if k in HEADLINE_METRICS or k.startswith("recall_at_")]
    return "  ".join(f"{k}={metrics[k]:.4g}" for k in keys)


def optimizer_settings(spec: TrainerParams) -> tuple[str, float]:
    """The optimizer and learning rate: the training params' where set, else the model config's."""
    training, model = spec.training, spec.model
    return training.optimizer or model.optimizer, training.learning_rate or model.learning_rate


def watched_metric(spec: TrainerParams, quality: _Quality | None) -> str:
    """What early stopping watches on the eval split: the configured metric, else Recall@<largest K>
    (retrieval, multitask) or RMSE (ranking); val_loss where that is not computed. The in-batch
    validation loss stays flat while recall still rises, so it is only the last resort."""
    configured = spec.training.early_stopping.monitor
    if configured:
        return configured
    if spec.model.has_retrieval and (quality is None or quality.retrieval):
        return f"recall_at_{max(spec.model.retrieval_k)}"
    if spec.model.has_rating_head and (quality is None or quality.rating):
        return "rmse"
    return "val_loss"


class _Quality:
    """Per-epoch Recall@K over the full catalog and RMSE/MAE on eval, in the target's units."""

    def __init__(self, built, data: TrainingData, model_config: ModelConfig):
        from ml_pipeline.model.functions import ModelFunctions

        self.data, self.ks = data, list(model_config.retrieval_k)
        self.retrieval = model_config.has_retrieval and bool(data.eval_relevant)
        self.rating = built.rating is not None and data.rating_actual is not None and len(data.rating_actual) > 0
        self.functions = ModelFunctions.from_keras(built, "the model in training")

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.retrieval:
            scores = scoring.retrieval_scores(
                self.functions.embed_queries,
                self.functions.embed_candidates(self.data.catalog_inputs),
                self.data.eval_buyers,
                self.data.eval_relevant,
                self.ks,
            )
            out.update({f"recall_at_{k}": scores[f"recall_at_{k}"] for k in self.ks})
        if self.rating:
            predicted = self.functions.predict_ratings(self.data.rating_inputs)
            out.update(metric_fns.rating_metrics(predicted, self.data.rating_actual))
        return out
