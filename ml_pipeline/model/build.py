"""Building the Keras models from the Transform artifact and the model config.

Each tower is a functional model from its raw inputs (named by
:func:`ml_pipeline.model.inputs.input_name`, shape ``[batch]``) to an
embedding ``[batch, output_dim]``:

=============================  ===============================================================
feature                        layers (inside the model, so serving gets the transform too)
=============================  ===============================================================
id, categorical                ``StringLookup`` (vocabulary, ``oov_buckets`` OOV indices) -> ``Embedding``
text                           ``TextTokens`` -> ``StringLookup`` -> ``Embedding`` -> ``MaskedMean``
numeric normalize              ``NumericInput`` (log1p, fill missing) -> ``Normalization`` (fixed mean/var)
numeric bucketize              ``NumericInput`` (fill missing) -> ``Discretization`` -> ``Embedding``
timestamp cyclical             ``CyclicalTime`` (sin/cos per period)
timestamp bucketize            ``TimestampBuckets`` -> ``Embedding``
cross                          per column: value / bucket index / ``CalendarKey`` -> ``CrossKey`` ->
                               ``Hashing`` -> ``Embedding``
=============================  ===============================================================

The slices are concatenated in :func:`ml_pipeline.config.features.tensor_breakdown`'s order, then the
tower's hidden layers and a linear ``Dense(output_dim)`` follow. With ``model.product_bias`` (retrieval
models by default) the product tower appends a bias and the buyer tower a constant 1 (``AppendOne``), so
the dot product is ``buyer · product + bias(product)``. With a ``product_id`` id feature the bias is the log
of the product's share of the training rows (fixed, :func:`set_product_prior`) times one learned weight
that starts at 1; without one, a learned ``Dense(1)`` of the tower's features. A buyer the towers know little about gets the best sellers, not noise.
After training, the Trainer scales the learned prior weight by the factor the eval split likes best
(:func:`calibrate_prior_weight`).
The rating head does not read the bias slots. The rating model concatenates the
buyer and product embeddings and their elementwise product (``PairInteraction``), runs the rating head
(hidden layers + ``Dense(1)``) and undoes the target transforms (:class:`~ml_pipeline.model.layers.InverseTargetTransform`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from ml_pipeline.config.model import ModelConfig
from ml_pipeline.model.inputs import RAW_DTYPES
from ml_pipeline.model.layers import (
    AppendOne,
    CalendarKey,
    CrossKey,
    CyclicalTime,
    InverseTargetTransform,
    MaskedMean,
    NumericInput,
    PairInteraction,
    TextTokens,
    TimestampBuckets,
)
from ml_pipeline.model.transform import TransformArtifact

TOWER_MODEL_NAMES = {"buyer": "query_model", "product": "candidate_model"}
PRODUCT_ID = "product_id"
PRODUCT_BIAS = "product_bias"
PRIOR_WEIGHT = "prior_weight"
# the learned prior weight times each of these is tried on the eval split after training (calibrate_prior_weight)
PRIOR_FACTORS = (1.0, 1.1, 1.25, 1.4, 1.6, 2.0)


@dataclass
class BuiltModels:
    query: keras.Model
    candidate: keras.Model
    rating_head: keras.Model | None = None  # concat(buyer, product embeddings) -> transformed rating [batch, 1]
    rating: keras.Model | None = None  # raw inputs -> rating [batch] in the target's units (exported)


def _input(entry: dict) -> keras.KerasTensor:
    return keras.Input(shape=(), dtype=RAW_DTYPES[entry["kind"]], name=entry["input_name"])


class _TowerBuilder:
    def __init__(self, transform: TransformArtifact, tower: str):
        self.transform, self.tower = transform, tower
        self.spec = transform.tower(tower)
        self.entries = {entry["column"]: entry for entry in self.spec["features"]}
        self.inputs = {entry["input_name"]: _input(entry) for entry in self.spec["features"]}
        self.bucket_index: dict[str, Any] = {}  # column -> its bucket index tensor (reused by crosses)
        self.id_index: dict[str, tuple[Any, int]] = {}  # id column -> (its lookup index tensor, table rows)

    def raw(self, entry: dict):
        return self.inputs[entry["input_name"]]

    def feature(self, entry: dict):
        name, kind = entry["input_name"], entry["kind"]
        raw = self.raw(entry)
        if kind in ("id", "categorical"):
            lookup = keras.layers.StringLookup(
                vocabulary=self.transform.vocabulary(entry),
                num_oov_indices=entry["oov_buckets"],
                mask_token=None,
                name=f"{name}_lookup",
            )
            embedding = keras.layers.Embedding(
                lookup.vocabulary_size(), entry["embedding_dim"], name=f"{name}_embedding"
            )
            index = lookup(raw)
            if kind == "id":
                self.id_index[entry["column"]] = (index, lookup.vocabulary_size())
            return embedding(index)
        if kind == "text":
            tokens = TextTokens(entry["max_tokens"], name=f"{name}_tokens")(raw)
            lookup = keras.layers.StringLookup(
                vocabulary=self.transform.vocabulary(entry),
                num_oov_indices=entry["oov_buckets"],
                mask_token=None,
                name=f"{name}_lookup",
            )
            embedding = keras.layers.Embedding(
                lookup.vocabulary_size(), entry["embedding_dim"], name=f"{name}_embedding"
            )
            return MaskedMean(name=f"{name}_mean")([embedding(lookup(tokens)), tokens])
        if kind == "numeric":
            if entry["transform"] == "normalize":
                values = NumericInput(log1p=entry["log1p"], fill_value=entry["fill_value"], name=f"{name}_input")(raw)
                return keras.layers.Normalization(
                    mean=entry["mean"], variance=entry["variance"], name=f"{name}_normalize"
                )(values)
            values = NumericInput(fill_value=entry["fill_value"], keepdims=False, name=f"{name}_input")(raw)
            index = keras.layers.Discretization(bin_boundaries=entry["boundaries"], name=f"{name}_buckets")(values)
            self.bucket_index[entry["column"]] = index
            return keras.layers.Embedding(entry["buckets"], entry["embedding_dim"], name=f"{name}_embedding")(index)
        if kind == "timestamp":
            if entry["transform"] == "cyclical":
                return CyclicalTime(entry["periods"], name=f"{name}_cyclical")(raw)
            index = TimestampBuckets(entry["boundaries"], name=f"{name}_buckets")(raw)
            self.bucket_index[entry["column"]] = index
            return keras.layers.Embedding(entry["buckets"], entry["embedding_dim"], name=f"{name}_embedding")(index)
        raise ValueError(f"unknown feature kind '{kind}'")

    def cross(self, index: int, cross: dict):
        prefix = f"cross{index}"
        keys = []
        for part in cross["parts"]:
            entry = self.entries[part["column"]]
            raw = self.raw(entry)
            name = f"{prefix}_{entry['input_name']}"
            if part["key"] == "value":
                keys.append(raw)
            elif part["key"] == "calendar":
                keys.append(CalendarKey(part["periods"], name=f"{name}_calendar")(raw))
            elif part["column"] in self.bucket_index and entry.get("boundaries") == part["boundaries"]:
                keys.append(self.bucket_index[part["column"]])
            elif entry["kind"] == "timestamp":
                keys.append(TimestampBuckets(part["boundaries"], name=f"{name}_buckets")(raw))
            else:
                values = NumericInput(fill_value=entry.get("fill_value", 0.0), keepdims=False, name=f"{name}_input")(
                    raw
                )
                keys.append(
                    keras.layers.Discretization(bin_boundaries=part["boundaries"], name=f"{name}_buckets")(values)
                )
        key = CrossKey(name=f"{prefix}_key")(keys)
        hashed = keras.layers.Hashing(num_bins=cross["hash_buckets"], name=f"{prefix}_hash")(key)
        return keras.layers.Embedding(cross["hash_buckets"], cross["embedding_dim"], name=f"{prefix}_embedding")(hashed)

    def build(self, layers: list, output_dim: int, name: str, bias: bool = False) -> keras.Model:
        slices = [self.feature(entry) for entry in self.spec["features"]]
        slices += [self.cross(index, cross) for index, cross in enumerate(self.spec["crosses"])]
        x = slices[0] if len(slices) == 1 else keras.layers.Concatenate(name="tower_input")(slices)
        hidden = stack(layers, x, prefix="hidden")
        # With the product bias the buyer's projection starts at zero: the untrained model scores by the
        # prior alone (popularity), and training moves it away where the eval split says it should.
        initializer = "zeros" if bias and self.tower == "buyer" else "glorot_uniform"
        x = keras.layers.Dense(output_dim, kernel_initializer=initializer, name="embedding")(hidden)
        if bias and self.tower == "buyer":
            x = AppendOne(name="bias_slot")(x)
        elif bias:
            if PRODUCT_ID in self.id_index:  # one per product: its log share, set by the Trainer and fixed
                index, rows = self.id_index[PRODUCT_ID]
                prior = keras.layers.Embedding(rows, 1, embeddings_initializer="zeros", name=PRODUCT_BIAS)(index)
                # how much of the prior the score takes is learned (starting at all of it)
                product_bias = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", name=PRIOR_WEIGHT)(
                    prior
                )
            else:  # products known by their features only: a linear function of them
                product_bias = keras.layers.Dense(1, name=PRODUCT_BIAS)(hidden)
            x = keras.layers.Concatenate(name="embedding_and_bias")([x, product_bias])
        return keras.Model(self.inputs, x, name=name)


def stack(layers: list, x, prefix: str):
    """The configured hidden layers (dense, dropout, batch_norm) applied to ``x``."""
    for index, layer in enumerate(layers):
        name = f"{prefix}{index}_{layer.type}"
        if layer.type == "dense":
            regularizer = keras.regularizers.L2(layer.l2) if layer.l2 else None
            x = keras.layers.Dense(layer.units, activation=layer.activation, kernel_regularizer=regularizer, name=name)(
                x
            )
        elif layer.type == "dropout":
            x = keras.layers.Dropout(layer.rate, name=name)(x)
        else:
            x = keras.layers.BatchNormalization(name=name)(x)
    return x


def build_tower(transform: TransformArtifact, model: ModelConfig, tower: str) -> keras.Model:
    return _TowerBuilder(transform, tower).build(
        getattr(model, f"{tower}_tower"), model.output_dim, TOWER_MODEL_NAMES[tower], bool(model.product_bias)
    )


def build_models(transform: TransformArtifact, model: ModelConfig) -> BuiltModels:
    """The query and candidate towers and, for ranking and multitask models, the rating models."""
    query = build_tower(transform, model, "buyer")
    candidate = build_tower(transform, model, "product")
    built = BuiltModels(query, candidate)
    if not model.has_rating_head:
        return built
    target = transform.target
    if target is None:
        raise ValueError("a ranking or multitask model needs target statistics in the Transform artifact")
    head_input = keras.Input(shape=(2 * model.embedding_width,), name="embeddings")
    pair = PairInteraction(bias_slot=bool(model.product_bias), name="pair_interaction")(head_input)
    x = stack(model.rating_head, pair, prefix="hidden")
    # Starting at the transformed target's mean makes the first epochs learn structure, not the offset.
    output = keras.layers.Dense(
        1, name="rating", bias_initializer=keras.initializers.Constant(target["transformed_mean"])
    )(x)
    head = keras.Model(head_input, output, name="rating_head")

    inputs = {name: tensor for name, tensor in _fresh_inputs(query, candidate).items()}
    buyer = query({name: inputs[name] for name in query.input})
    product = candidate({name: inputs[name] for name in candidate.input})
    transformed = head(keras.layers.Concatenate(name="buyer_product")([buyer, product]))
    rating = InverseTargetTransform(target["transforms"], name="rating_original_units")(transformed)
    built.rating_head = head
    built.rating = keras.Model(inputs, rating, name="rating_model")
    return built


def set_product_prior(candidate: keras.Model, transform: TransformArtifact, counts: dict[str, float]) -> bool:
    """Set each product's bias to the log of its share of the training rows (a product never bought in
    train: half a row), so a buyer the towers know nothing about is served the best sellers rather than noise.
    ``counts``: train rows per product id. False when the tower has no per-product bias."""
    try:
        layer = candidate.get_layer(PRODUCT_BIAS)
    except ValueError:
        return False
    if not isinstance(layer, keras.layers.Embedding):
        return False
    entry = next(e for e in transform.tower("product")["features"] if e["column"] == PRODUCT_ID)
    total = max(sum(counts.values()), 1.0)
    floor = 0.5 / total  # an unseen product: half a row
    shares = [max(counts.get(token, 0.0), 0.5) / total for token in transform.vocabulary(entry)]
    values = np.log(np.asarray([floor] * entry["oov_buckets"] + shares, dtype=np.float64))
    values -= values.mean()  # only differences count; centred, the bias stays near the embeddings' scale
    layer.embeddings.assign(values.reshape(-1, 1).astype(np.float32))
    # Fixed: only its weight (PRIOR_WEIGHT) is learned. At weight 1 the sampling correction of training
    # (logit - log share) cancels it exactly, so the towers start from what they would learn without it.
    layer.trainable = False
    return True


def calibrate_prior_weight(
    candidate: keras.Model,
    evaluate: Callable[[], dict[str, float]],
    metric: str,
    factors: tuple[float, ...] = PRIOR_FACTORS,
) -> tuple[float, dict[str, float]] | None:
    """Scale the product prior's learned weight by the factor of ``factors`` whose ``evaluate()[metric]``
    (the eval split's Recall@K: higher is better) is best, keeping 1 unless another is strictly better:
    ``(factor, its evaluation)``, or None when the tower has no prior weight. Training fits each buyer's
    own rows, so at serving the personal part of the score outweighs what popularity says about the
    products the buyer has not met yet (ml-latest-small: eval Recall@100 0.376 at the learned weight,
    0.390 at 1.25 times it)."""
    try:
        layer = candidate.get_layer(PRIOR_WEIGHT)
    except ValueError:
        return None
    learned = np.asarray(layer.kernel.numpy())
    best_factor, best = 1.0, evaluate()
    for factor in factors:
        if factor == 1.0:
            continue
        layer.kernel.assign(learned * factor)
        evaluation = evaluate()
        if evaluation[metric] > best[metric]:
            best_factor, best = factor, evaluation
    layer.kernel.assign(learned * best_factor)
    return best_factor, best


def _fresh_inputs(*models: keras.Model) -> dict[str, keras.KerasTensor]:
    """New inputs for the union of the models' inputs (a column in both towers is one input)."""
    inputs: dict[str, keras.KerasTensor] = {}
    for model in models:
        for name, tensor in model.input.items():
            if name not in inputs:
                inputs[name] = keras.Input(shape=(), dtype=tensor.dtype, name=name)
    return inputs


# -- parameter counts -------------------------------------------------------------------
def _size(variable) -> int:
    return int(math.prod(int(d) for d in variable.shape))


DENSE_LAYERS = (keras.layers.Dense, keras.layers.BatchNormalization)


def built_parameter_counts(built: BuiltModels) -> dict[str, Any]:
    """Parameters of the built models, split like :func:`ml_pipeline.config.model.parameter_counts`."""

    def tower_counts(model: keras.Model) -> dict[str, Any]:
        embeddings, dense, other = [], 0, 0
        for layer in model.layers:
            params = layer.count_params() if layer.built else 0
            if isinstance(layer, keras.layers.Embedding):
                embeddings.append(
                    {"name": layer.name, "rows": int(layer.input_dim), "dim": int(layer.output_dim), "params": params}
                )
            elif isinstance(layer, DENSE_LAYERS):
                dense += params
            else:
                other += params
        embedding_params = sum(e["params"] for e in embeddings)
        trainable = sum(_size(w) for w in model.trainable_weights)
        return {
            "embeddings": embeddings,
            "embedding_params": embedding_params,
            "dense_params": dense,
            "other_params": other,
            "trainable": trainable,
            "total": embedding_params + dense + other,
        }

    counts: dict[str, Any] = {"towers": {"buyer": tower_counts(built.query), "product": tower_counts(built.candidate)}}
    if built.rating_head is not None:
        head = built.rating_head
        counts["rating_head"] = {
            "total": int(head.count_params()),
            "trainable": sum(_size(w) for w in head.trainable_weights),
        }
    counts["total"] = sum(t["total"] for t in counts["towers"].values()) + counts.get("rating_head", {}).get("total", 0)
    return counts
