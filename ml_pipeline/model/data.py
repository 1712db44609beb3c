"""The Trainer's data: the splits as model inputs, the catalog, and the eval buyers the per-epoch metrics score.

The splits grow with interactions, so by default they are streamed from their
Parquet parts in bounded chunks (:class:`~ml_pipeline.model.stream.ParquetSplit`);
``streaming=False`` loads them whole into NumPy arrays (the earlier path, kept for
the benchmark's comparison). The catalog and vocabularies grow with products and
stay in memory, as do the bounded samples the per-epoch metrics score.
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
from ml_pipeline.model.inputs import target_values, tower_batch, tower_inputs
from ml_pipeline.model.stream import ArraySplit, ParquetSplit
from ml_pipeline.model.training import CANDIDATE_INDEX, SAMPLING_PROBABILITY, TARGET
from ml_pipeline.model.transform import apply_target_transforms
from ml_pipeline.spec import TrainingParams

MAX_RATING_EVAL_ROWS = 100_000


@dataclass
class TrainingData:
    train: ArraySplit | ParquetSplit
    eval: ArraySplit | ParquetSplit | None
    catalog_ids: np.ndarray
    catalog_inputs: dict[str, np.ndarray]
    catalog_counts: np.ndarray | None = None  # train rows per catalog product
    eval_buyers: dict[str, np.ndarray] = field(default_factory=dict)
    eval_relevant: list[set] = field(default_factory=list)
    rating_inputs: dict[str, np.ndarray] = field(default_factory=dict)
    rating_actual: np.ndarray | None = None

    @property
    def train_rows(self) -> int:
        return self.train.rows

    @property
    def eval_rows(self) -> int:
        return self.eval.rows if self.eval is not None else 0


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
    streaming: bool = True,
) -> TrainingData:
    """The train and eval splits as model inputs (streamed, or whole in memory), the catalog, and what the
    per-epoch quality metrics score."""
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

    columns = ["product_id", *(c for t in ("buyer", "product") for c, _ in tower_inputs(features, t).values())]
    if model.has_rating_head:
        columns.append("target")

    def split(name: str) -> ArraySplit | ParquetSplit:
        what = f"the {name} split"
        if streaming:
            return ParquetSplit(examples.path / name, columns, lambda table: arrays_for(table, what))
        return ArraySplit(arrays_for(examples.read_split(name), what))

    train = split("train")
    if train.rows == 0:
        raise DataError("the train split is empty; nothing to train on", "split")
    eval_split = split("eval")
    data = TrainingData(
        train=train,
        eval=eval_split if eval_split.rows else None,
        catalog_ids=np.asarray(catalog_ids.to_pylist(), dtype=object),
        catalog_inputs=tower_batch(catalog, features, "product"),
        catalog_counts=train_counts,
    )
    if data.eval is None:
        log.warning("the eval split is empty: no validation loss, no per-epoch quality metrics, no early stopping")
        return data
    if model.has_retrieval:
        data.eval_buyers, data.eval_relevant = _eval_buyers(examples, features, training, data.catalog_ids)
    if model.has_rating_head:
        # a seeded sample of at most MAX_RATING_EVAL_ROWS eval rows, the same rows on either path
        pick = np.arange(eval_split.rows)
        if eval_split.rows > MAX_RATING_EVAL_ROWS:
            pick = np.sort(
                np.random.default_rng(training.seed).choice(eval_split.rows, MAX_RATING_EVAL_ROWS, replace=False)
            )
        if streaming:
            rows = eval_split.take(pick)
        else:
            rows = examples.read_split("eval")
            rows = rows.take(pa.array(pick)) if len(pick) < rows.num_rows else rows
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
