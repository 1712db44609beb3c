"""The Trainer's data: the splits as model inputs, the catalog, and the eval buyers the per-epoch metrics score.

Whole splits are loaded into NumPy arrays here; the catalog and vocabularies grow
with products, the splits with interactions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ml_pipeline import scoring
from ml_pipeline.artifact_types import Examples
from ml_pipeline.config.features import FeatureConfig
from ml_pipeline.config.model import ModelConfig
from ml_pipeline.data import sources
from ml_pipeline.errors import DataError
from ml_pipeline.model.inputs import target_values, tower_batch
from ml_pipeline.model.training import CANDIDATE_INDEX, SAMPLING_PROBABILITY, TARGET
from ml_pipeline.model.transform import apply_target_transforms
from ml_pipeline.spec import TrainingParams

MAX_RATING_EVAL_ROWS = 100_000


@dataclass
class TrainingData:
    train: dict[str, np.ndarray]
    eval: dict[str, np.ndarray]
    catalog_ids: np.ndarray
    catalog_inputs: dict[str, np.ndarray]
    eval_buyers: dict[str, np.ndarray] = field(default_factory=dict)
    eval_relevant: list[set] = field(default_factory=list)
    rating_inputs: dict[str, np.ndarray] = field(default_factory=dict)
    rating_actual: np.ndarray | None = None

    @property
    def train_rows(self) -> int:
        return len(next(iter(self.train.values())))

    @property
    def eval_rows(self) -> int:
        return len(next(iter(self.eval.values()))) if self.eval else 0


def _inputs(table: pa.Table, features: FeatureConfig, what: str) -> dict[str, np.ndarray]:
    arrays = {}
    for tower in ("buyer", "product"):
        for index, feature in enumerate(features.tower(tower).features):
            if feature.column not in table.column_names:
                raise DataError(
                    f"'{feature.column}' is not a column of {what}", f"features.{tower}_tower.features[{index}].column"
                )
        arrays.update(tower_batch(table, features, tower))
    return arrays


def load_training_data(
    examples: Examples,
    features: FeatureConfig,
    model: ModelConfig,
    training: TrainingParams,
    transform_target: dict | None,
    log,
) -> TrainingData:
    """The train and eval splits as model inputs, the catalog, and what the per-epoch quality metrics score."""
    catalog = examples.read_catalog()
    for index, feature in enumerate(features.product_tower.features):
        if feature.column not in catalog.column_names:
            raise DataError(
                f"'{feature.column}' is not a product column of the catalog (map it under "
                "dataset.mapping.product_features), so products cannot be embedded",
                f"features.product_tower.features[{index}].column",
            )
    catalog_ids = catalog.column("product_id").cast(pa.string())
    train_counts = np.asarray(catalog.column("train_count").to_numpy(zero_copy_only=False), dtype=np.float64)
    probability = (train_counts / max(train_counts.sum(), 1.0)).astype(np.float32)

    def arrays_for(table: pa.Table, what: str) -> dict[str, np.ndarray]:
        arrays = _inputs(table, features, what)
        index = pc.index_in(table.column("product_id").cast(pa.string()), value_set=catalog_ids)
        index = np.asarray(pc.fill_null(index, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
        arrays[CANDIDATE_INDEX] = index
        arrays[SAMPLING_PROBABILITY] = probability[np.maximum(index, 0)]
        if model.has_rating_head:
            arrays[TARGET] = apply_target_transforms(target_values(table), transform_target["transforms"])
        return arrays

    train_table = examples.read_split("train")
    if train_table.num_rows == 0:
        raise DataError("the train split is empty; nothing to train on", "split")
    eval_table = examples.read_split("eval")
    data = TrainingData(
        train=arrays_for(train_table, "the train split"),
        eval=arrays_for(eval_table, "the eval split") if eval_table.num_rows else {},
        catalog_ids=np.asarray(catalog_ids.to_pylist(), dtype=object),
        catalog_inputs=tower_batch(catalog, features, "product"),
    )
    if eval_table.num_rows == 0:
        log.warning("the eval split is empty: no validation loss, no per-epoch quality metrics, no early stopping")
        return data
    if model.has_retrieval:
        data.eval_buyers, data.eval_relevant = _eval_buyers(examples, features, training, data.catalog_ids)
    if model.has_rating_head:
        rows = eval_table
        if rows.num_rows > MAX_RATING_EVAL_ROWS:
            pick = np.sort(
                np.random.default_rng(training.seed).choice(rows.num_rows, MAX_RATING_EVAL_ROWS, replace=False)
            )
            rows = rows.take(pa.array(pick))
        data.rating_inputs = _inputs(rows, features, "the eval split")
        data.rating_actual = target_values(rows)
    return data


def _eval_buyers(
    examples: Examples, features: FeatureConfig, training: TrainingParams, catalog_ids: np.ndarray
) -> tuple[dict, list[set]]:
    """Up to ``eval_max_buyers`` eval buyers (by a seeded hash of their id): their latest eval row's buyer
    inputs and the catalog rows of the products they bought in eval."""
    con = sources.connect()
    try:
        table = scoring.latest_rows_per_buyer(
            con, examples.split_glob("eval"), sample=(training.seed, training.eval_max_buyers)
        )
    finally:
        con.close()
    return tower_batch(table, features, "buyer"), scoring.relevant_rows(table, catalog_ids)
