"""Model configs: tower architectures, rating head, optimizer, retrieval settings.

Each tower is its hidden layers followed by a linear projection to
``output_dim``, so the buyer and product embeddings always have the same
width. The rating head (ranking, multitask) reads the concatenated buyer and
product embeddings and their elementwise product, runs its hidden layers and ends in a single unit.

:func:`parameter_counts` computes what Keras would report for the model the
Trainer builds: embedding tables sized by the configured vocabulary limits
(an upper bound; the trained model's tables are sized by the vocabulary it
actually found), dense kernels and biases, and batch-norm statistics.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from ml_pipeline.config.dataset import StrictModel
from ml_pipeline.config.features import FeatureConfig
from ml_pipeline.config.scann import ScannChoice
from ml_pipeline.errors import UNION_TAGS, ConfigError, Problem

ACTIVATIONS = ("relu", "gelu", "selu", "swish", "tanh", "sigmoid", "linear")


class ModelType(StrEnum):
    """What a model learns: retrieval (two towers), ranking (a rating head) or both (multitask)."""

    RETRIEVAL = "retrieval"
    RANKING = "ranking"
    MULTITASK = "multitask"

    @property
    def has_retrieval(self) -> bool:
        """Its towers are trained to retrieve: top-K by dot product, Recall@K."""
        return self in (ModelType.RETRIEVAL, ModelType.MULTITASK)

    @property
    def has_rating(self) -> bool:
        """It has a rating head: predicted ratings, RMSE/MAE."""
        return self in (ModelType.RANKING, ModelType.MULTITASK)


class DenseLayer(StrictModel):
    type: Literal["dense"] = "dense"
    units: int = Field(ge=1, le=16_384)
    activation: Literal[ACTIVATIONS] = "relu"  # type: ignore[valid-type]
    l2: float = Field(default=0.0, ge=0.0, le=1.0)


class DropoutLayer(StrictModel):
    type: Literal["dropout"] = "dropout"
    rate: float = Field(gt=0.0, lt=1.0)


class BatchNormLayer(StrictModel):
    type: Literal["batch_norm"] = "batch_norm"


Layer = Annotated[DenseLayer | DropoutLayer | BatchNormLayer, Field(discriminator="type")]
UNION_TAGS.update({"dense", "dropout", "batch_norm"})


DEFAULT_RATING_HEAD = (DenseLayer(units=64),)
DEFAULT_LEARNING_RATES = {ModelType.RANKING: 0.001}  # every other model type: 0.01


class LossWeights(StrictModel):
    retrieval: float = Field(default=1.0, ge=0.0)
    rating: float = Field(default=1.0, ge=0.0)

    @model_validator(mode="after")
    def _not_both_zero(self) -> LossWeights:
        if self.retrieval == 0 and self.rating == 0:
            raise ValueError("retrieval: at least one loss weight must be positive")
        return self


class ModelConfig(StrictModel):
    model_type: ModelType
    buyer_tower: list[Layer] = []
    product_tower: list[Layer] = []
    output_dim: int = Field(default=32, ge=1, le=2048)
    # None: DEFAULT_RATING_HEAD for ranking and multitask models (a lone Dense(1) over the embeddings
    # learns little more than buyer and product biases), none for retrieval; [] asks for that lone Dense(1).
    rating_head: list[Layer] | None = None
    # Adam: the in-batch softmax loss is a mean over the batch, so each embedding row's gradient is about
    # 1/batch of a summed loss's; Adagrad(0.1) barely moves the embeddings with it (retrieval no better than
    # popularity on MovieLens), while Adam's step does not depend on the loss scale.
    optimizer: Literal["adagrad", "adam", "sgd"] = "adam"
    # None: 0.01, or 0.001 for ranking models, whose MSE on ids alone overfits within two epochs at 0.01
    # (ml-latest-small: best test RMSE at 0.001, early stopping picking the epoch).
    learning_rate: float | None = Field(default=None, gt=0.0, le=10.0)
    clipnorm: float | None = Field(default=1.0, gt=0.0)
    loss_weights: LossWeights | None = None
    # None: on for retrieval models (on multitask ones it cost both tasks on ml-latest-small: Recall@100
    # 1.33x popularity instead of 1.37x, RMSE 0.881 instead of 0.867). A per-product term in every retrieval score (the product
    # tower's extra output dimension, met by a constant 1 in the buyer's): the log of the product's share of
    # the training rows, fixed, times one learned weight (starting at 1). On a small or popularity-dominated
    # log a buyer with little history otherwise gets noise instead of the best sellers.
    product_bias: bool | None = None
    # The in-batch softmax's temperature (retrieval, multitask; ranking has no such loss): the sampling-
    # corrected logits are divided by it. 0.5 on ml-latest-small: test top-100 accuracy 0.218 instead of
    # 0.214 at 1 (training seed 7: 0.214 instead of 0.213), multitask Recall@100 1.42x popularity instead
    # of 1.37x and RMSE 0.857 instead of 0.867; 0.25 and 2 were worse.
    temperature: float = Field(default=0.5, gt=0.0, le=100.0)
    # None: on for ranking models. The weights each epoch is evaluated with, the best epoch keeps and the
    # Trainer exports are an exponential moving average of the trained ones (Polyak averaging: Keras's
    # use_ema), while training goes on from the raw weights. ml-latest-small ranking, test RMSE against the
    # bias baseline for training seeds 42/7/1: -2.13/-2.07/-1.86% at momentum 0.985 (0.98-0.995 all helped),
    # -1.98/-1.92/-1.53% without; retrieval's Recall@100 was a little worse with it (1.45x popularity, 1.46x).
    weight_averaging: bool | None = None
    weight_averaging_momentum: float = Field(default=0.985, gt=0.0, lt=1.0)
    retrieval_k: list[int] = [5, 10, 50, 100]
    retrieval_algorithm: Literal["brute_force", "scann"] = "brute_force"
    # ScaNN's parameters (retrieval_algorithm "scann"): "auto" chooses them from the catalog size and checks
    # recall@K >= 0.95 against the exact top-K at export (ml_pipeline/serving/scann.py); or fixed ones.
    scann: ScannChoice = "auto"

    @field_validator("retrieval_k")
    @classmethod
    def _k_list(cls, ks: list[int]) -> list[int]:
        if not ks:
            raise ValueError("give at least one K")
        if any(k < 1 or k > 1000 for k in ks):
            raise ValueError("each K must be between 1 and 1000")
        if len(set(ks)) != len(ks):
            raise ValueError("each K may appear once")
        return sorted(ks)

    @model_validator(mode="after")
    def _type_specific_fields(self) -> ModelConfig:
        if not self.model_type.has_rating and self.rating_head:
            raise ValueError("rating_head: only ranking and multitask models have a rating head")
        if self.rating_head is None:
            self.rating_head = list(DEFAULT_RATING_HEAD) if self.model_type.has_rating else []
        if self.product_bias and not self.model_type.has_retrieval:
            raise ValueError("product_bias: only retrieval and multitask models have a retrieval score")
        if self.product_bias is None:
            self.product_bias = self.model_type == ModelType.RETRIEVAL
        if self.learning_rate is None:
            self.learning_rate = DEFAULT_LEARNING_RATES.get(self.model_type, 0.01)
        if self.weight_averaging is None:
            self.weight_averaging = self.model_type == ModelType.RANKING
        if self.model_type != ModelType.MULTITASK and self.loss_weights is not None:
            raise ValueError("loss_weights: only multitask models combine losses")
        if self.model_type == ModelType.MULTITASK and self.loss_weights is None:
            self.loss_weights = LossWeights()
        for tower in ("buyer_tower", "product_tower", "rating_head"):
            layers = getattr(self, tower)
            for index in range(1, len(layers)):
                kind = layers[index].type
                if kind != "dense" and kind == layers[index - 1].type:
                    raise ValueError(f"{tower}[{index}]: two {kind} layers in a row")
        return self

    @property
    def has_retrieval(self) -> bool:
        return self.model_type.has_retrieval

    @property
    def embedding_width(self) -> int:
        """The width of the towers' outputs: ``output_dim``, plus the product bias' dimension."""
        return self.output_dim + (1 if self.product_bias else 0)

    @property
    def has_rating_head(self) -> bool:
        return self.model_type.has_rating

    def check_against(self, features: FeatureConfig) -> None:
        """Problems that appear only when this model is paired with a feature config."""
        if self.has_rating_head and features.target is None:
            raise ConfigError(
                Problem(
                    "feature_config.target", f"a {self.model_type} model needs a target column in the feature config"
                )
            )


def _stack_counts(layers: list, input_dim: int, final_units: int) -> tuple[list[dict], int, int]:
    """Per-layer parameter counts for hidden layers + the final dense projection."""
    rows = []
    width = input_dim
    trainable = non_trainable = 0
    for layer in [*layers, DenseLayer(units=final_units, activation="linear")]:
        if layer.type == "dense":
            params = width * layer.units + layer.units
            trainable += params
            rows.append({"layer": f"dense {layer.units}", "input": width, "output": layer.units, "params": params})
            width = layer.units
        elif layer.type == "batch_norm":
            # gamma and beta are trained; the moving mean and variance are not.
            trainable += 2 * width
            non_trainable += 2 * width
            rows.append({"layer": "batch_norm", "input": width, "output": width, "params": 4 * width})
        else:
            rows.append({"layer": f"dropout {layer.rate}", "input": width, "output": width, "params": 0})
    rows[-1]["layer"] = f"output {final_units}"
    return rows, trainable, non_trainable


def parameter_counts(model: ModelConfig, features: FeatureConfig) -> dict:
    """Parameter counts per tower and head, embedding tables included."""
    towers = {}
    for tower_name in ("buyer", "product"):
        tower = features.tower(tower_name)
        embeddings = [
            {"name": f.column, "rows": f.table_rows(), "dim": f.width(), "params": f.table_rows() * f.width()}
            for f in tower.features
            if f.table_rows()
        ] + [
            {"name": c.name, "rows": c.hash_buckets, "dim": c.embedding_dim, "params": c.hash_buckets * c.embedding_dim}
            for c in tower.crosses
        ]
        input_dim = sum(f.width() for f in tower.features) + sum(c.width() for c in tower.crosses)
        layers, dense_trainable, non_trainable = _stack_counts(
            getattr(model, f"{tower_name}_tower"), input_dim, model.output_dim
        )
        product_id = next((f for f in tower.features if f.kind == "id" and f.column == "product_id"), None)
        prior = 0  # the fixed log-share bias per product: counted, not trained
        if model.product_bias and tower_name == "product" and product_id is not None:
            prior = product_id.table_rows()
            embeddings.append({"name": "product_bias", "rows": prior, "dim": 1, "params": prior})
            layers.append({"layer": "prior weight", "input": 1, "output": 1, "params": 1})
            dense_trainable += 1  # how much of the prior the score takes
        elif model.product_bias and tower_name == "product":
            width = layers[-1]["input"]
            layers.append({"layer": "product bias", "input": width, "output": 1, "params": width + 1})
            dense_trainable += width + 1
        embedding_params = sum(e["params"] for e in embeddings)
        towers[tower_name] = {
            "input_dim": input_dim,
            "embeddings": embeddings,
            "layers": layers,
            "embedding_params": embedding_params,
            "dense_params": dense_trainable + non_trainable,
            "trainable": embedding_params - prior + dense_trainable,
            "non_trainable": non_trainable + prior,
            "total": embedding_params + dense_trainable + non_trainable,
        }
    result = {"towers": towers}
    if model.has_rating_head:
        # the head reads the buyer and product embeddings and their elementwise product
        layers, trainable, non_trainable = _stack_counts(model.rating_head, 3 * model.output_dim, 1)
        result["rating_head"] = {
            "input_dim": 3 * model.output_dim,
            "layers": layers,
            "trainable": trainable,
            "non_trainable": non_trainable,
            "total": trainable + non_trainable,
        }
    result["total"] = sum(t["total"] for t in towers.values()) + result.get("rating_head", {}).get("total", 0)
    return result
