"""The training objective, the input pipeline and the training steps (a custom loop under a tf.distribute strategy).

Retrieval (retrieval, multitask): for a batch of (buyer, product) pairs,
every product of the batch is a candidate for every buyer. Logits are the
dot products of the buyer and product embeddings, corrected for how often
each candidate is sampled (``SamplingProbabilityCorrection``: ``logit -
log p(candidate)``, with p its share of the training rows), divided by
``model.temperature``, and with "accidental hits" (the buyer's own product
appearing again as a negative) removed (``RemoveAccidentalHits``); the loss is
the softmax cross-entropy against the diagonal.

Rating (ranking, multitask): the rating head on concat(buyer, product
embeddings) regresses the transformed target with MSE.

Multitask: ``loss_weights.retrieval * retrieval + loss_weights.rating *
rating``. L2 penalties of dense layers are added to the total.

Weight averaging (``model.weight_averaging``, ranking models by default): the optimizer keeps an
exponential moving average of the weights, which :func:`averaged_weights` swaps in for evaluation.

Under ``MirroredStrategy`` the global batch is split between replicas, and
each replica's share is its own set of in-batch candidates; the losses are
divided by the number of replicas before the gradients are summed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras_rs.layers import RemoveAccidentalHits, SamplingProbabilityCorrection

from ml_pipeline.config.model import ModelConfig, ModelType
from ml_pipeline.model.build import BuiltModels

CANDIDATE_INDEX = "__candidate_index"
SAMPLING_PROBABILITY = "__sampling_probability"
TARGET = "__target"


def make_optimizer(model: ModelConfig, learning_rate: float, name: str | None = None) -> keras.optimizers.Optimizer:
    """``name`` (the training params' choice) over the model config's optimizer."""
    kwargs = {"learning_rate": learning_rate}
    if model.clipnorm:
        kwargs["clipnorm"] = model.clipnorm
    if model.weight_averaging:  # the optimizer keeps the moving average: see averaged_weights
        kwargs.update(use_ema=True, ema_momentum=model.weight_averaging_momentum)
    name = name or model.optimizer
    if name == "adagrad":
        return keras.optimizers.Adagrad(**kwargs)
    if name == "adam":
        return keras.optimizers.Adam(**kwargs)
    return keras.optimizers.SGD(**kwargs)


@contextmanager
def averaged_weights(optimizer: keras.optimizers.Optimizer, variables: list) -> Iterator[bool]:
    """Within: ``variables`` hold the optimizer's moving average of them (``model.weight_averaging``), what
    an epoch is evaluated and kept as best with; after: their trained values again, to train on from.
    Yields whether it swapped anything (False, a no-op, for an optimizer without the average)."""
    if not optimizer.use_ema:
        yield False
        return
    trained = [np.asarray(v.numpy()) for v in variables]
    optimizer.finalize_variable_values(variables)
    try:
        yield True
    finally:
        for variable, value in zip(variables, trained):
            variable.assign(value)


@dataclass
class Objective:
    """Computes the losses of one batch from the built models."""

    built: BuiltModels
    model_type: ModelType
    retrieval_weight: float = 1.0
    rating_weight: float = 1.0
    temperature: float = 1.0  # the corrected retrieval logits are divided by it

    def __post_init__(self):
        self.buyer_names = list(self.built.query.input)
        self.product_names = list(self.built.candidate.input)
        self.correction = SamplingProbabilityCorrection()
        self.remove_hits = RemoveAccidentalHits()
        model_type = ModelType(self.model_type)
        self.has_retrieval, self.has_rating = model_type.has_retrieval, model_type.has_rating
        if not self.has_rating:
            self.retrieval_weight, self.rating_weight = 1.0, 0.0
        elif not self.has_retrieval:
            self.retrieval_weight, self.rating_weight = 0.0, 1.0

    @property
    def parts(self) -> dict[str, keras.Model]:
        """The trained parts whose weights are reported: buyer tower, product tower, rating head."""
        parts = {"buyer_tower": self.built.query, "product_tower": self.built.candidate}
        if self.built.rating_head is not None:
            parts["rating_head"] = self.built.rating_head
        return parts

    @property
    def trainable_variables(self) -> list:
        return [v for part in self.parts.values() for v in part.trainable_variables]

    @property
    def all_weights(self) -> list:
        return [v for part in self.parts.values() for v in part.weights]

    def losses(self, batch: dict, training: bool) -> dict[str, tf.Tensor]:
        buyer = self.built.query({name: batch[name] for name in self.buyer_names}, training=training)
        product = self.built.candidate({name: batch[name] for name in self.product_names}, training=training)
        out = {}
        total = tf.constant(0.0)
        if self.has_retrieval:
            logits = tf.matmul(buyer, product, transpose_b=True)
            labels = tf.eye(tf.shape(logits)[0], dtype=logits.dtype)
            logits = self.correction(logits, tf.expand_dims(batch[SAMPLING_PROBABILITY], 0)) / self.temperature
            logits = self.remove_hits(logits, labels, batch[CANDIDATE_INDEX])
            retrieval = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits))
            out["retrieval_loss"] = retrieval
            total += self.retrieval_weight * retrieval
        if self.has_rating:
            predicted = self.built.rating_head(tf.concat([buyer, product], axis=-1), training=training)
            rating = tf.reduce_mean(tf.square(tf.squeeze(predicted, -1) - batch[TARGET]))
            out["rating_loss"] = rating
            total += self.rating_weight * rating
        penalties = [loss for part in self.parts.values() for loss in part.losses]
        if penalties:
            total += tf.add_n(penalties)
        out["loss"] = total
        return out


class Steps:
    """The compiled train / eval / gradient steps under a strategy."""

    def __init__(self, objective: Objective, optimizer, strategy: tf.distribute.Strategy):
        self.objective, self.optimizer, self.strategy = objective, optimizer, strategy
        replicas = strategy.num_replicas_in_sync

        def train_one(batch):
            variables = objective.trainable_variables
            with tf.GradientTape() as tape:
                losses = objective.losses(batch, training=True)
                scaled = losses["loss"] / replicas
            gradients = tape.gradient(scaled, variables)
            optimizer.apply(gradients, variables)
            return losses

        def eval_one(batch):
            return objective.losses(batch, training=False)

        def reduce(per_replica):
            return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

        @tf.function(reduce_retracing=True)
        def train_step(batch):
            return reduce(strategy.run(train_one, args=(batch,)))

        @tf.function(reduce_retracing=True)
        def eval_step(batch):
            return reduce(strategy.run(eval_one, args=(batch,)))

        @tf.function(reduce_retracing=True)
        def gradients(batch):
            variables = objective.trainable_variables
            with tf.GradientTape() as tape:
                loss = objective.losses(batch, training=False)["loss"]
            return tape.gradient(loss, variables)

        self.train_step, self.eval_step, self.gradients = train_step, eval_step, gradients

    def distribute(self, dataset: tf.data.Dataset):
        """The dataset split across the strategy's replicas (the default strategy returns it as it is).

        Batches stay on the host: the raw inputs are strings, and the string
        ops of the preprocessing layers run on the CPU anyway.
        """
        options = tf.distribute.InputOptions(experimental_fetch_to_device=False)
        return self.strategy.experimental_distribute_dataset(dataset, options=options)

    def run_epoch(self, dataset, step: Callable, on_batch: Callable | None = None) -> dict[str, float]:
        """Run ``step`` over a (distributed) dataset; averages of the losses weighted by batch size."""
        sums: dict[str, float] = {}
        rows = 0
        for batch in dataset:
            size = _batch_rows(batch)
            losses = step(batch)
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value) * size
            rows += size
            if on_batch is not None:
                on_batch()
        return {name: total / rows for name, total in sums.items()} if rows else {}


def _batch_rows(batch) -> int:
    value = batch[CANDIDATE_INDEX]
    if isinstance(value, tf.distribute.DistributedValues):
        return int(sum(int(tf.shape(v)[0]) for v in value.values))
    return int(tf.shape(value)[0])


# -- input pipeline ------------------------------------------------------------------------
def tensor_spec(values: np.ndarray) -> tf.TensorSpec:
    if values.dtype == object or values.dtype.kind in ("U", "S"):
        return tf.TensorSpec([None], tf.string)
    return tf.TensorSpec([None], tf.as_dtype(values.dtype))


def batches(
    arrays: dict[str, np.ndarray],
    batch_size: int,
    seed: int | None = None,
    epoch: Callable[[], int] | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A dataset of whole batches sliced from numpy arrays (no per-row Python work).

    With ``seed``, rows are shuffled each epoch with a permutation seeded by
    ``seed`` and ``epoch()``, so a resumed run sees the same order an
    uninterrupted one would.
    """
    n = len(next(iter(arrays.values())))
    stop = n - n % batch_size if drop_remainder and n >= batch_size else n
    signature = {name: tensor_spec(values) for name, values in arrays.items()}

    def generate():
        order = np.arange(n) if seed is None else np.random.default_rng([seed, epoch() if epoch else 0]).permutation(n)
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size]
            yield {name: values[index] for name, values in arrays.items()}

    # A fixed prefetch with tf.data's autotuner off: the Trainer makes a new
    # iterator every epoch, and destroying an autotuned one sometimes waits for
    # the autotune thread's doubling sleep (epochs ending at exactly 20.47 s or
    # 40.95 s in bench/pipeline.py). Two batches ahead keeps the loop fed.
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)
    return dataset.with_options(options)


# -- weight and gradient statistics ---------------------------------------------------------
HISTOGRAM_BINS = 20


def _arrays(values) -> list[np.ndarray]:
    out = []
    for value in values:
        if value is None:
            continue
        if isinstance(value, tf.IndexedSlices):  # an embedding's gradient: only the rows in the batch
            value = value.values
        array = np.asarray(value, dtype=np.float64).reshape(-1)
        if array.size:
            out.append(array)
    return out


def value_statistics(values, bins: int = HISTOGRAM_BINS) -> tuple[dict[str, float], dict[str, list]]:
    """L1, L2 norm, mean, std, min, max of all values (variables, tensors, gradients), and a histogram."""
    arrays = _arrays(values)
    count = sum(a.size for a in arrays)
    if not count:
        return {}, {}
    total = sum(float(a.sum()) for a in arrays)
    squares = sum(float(np.square(a).sum()) for a in arrays)
    low = min(float(a.min()) for a in arrays)
    high = max(float(a.max()) for a in arrays)
    mean = total / count
    stats = {
        "l1": sum(float(np.abs(a).sum()) for a in arrays),
        "l2": float(np.sqrt(squares)),
        "mean": mean,
        "std": float(np.sqrt(max(squares / count - mean * mean, 0.0))),
        "min": low,
        "max": high,
    }
    edges = np.linspace(low, high if high > low else low + 1e-12, bins + 1)
    counts = np.zeros(bins, dtype=np.int64)
    for array in arrays:
        counts += np.histogram(array, bins=edges)[0]
    return stats, {"counts": counts.tolist(), "edges": [float(e) for e in edges]}
