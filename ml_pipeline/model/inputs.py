"""How rows become model inputs: the contract between ExampleGen's Parquet and every model.

Models take *raw* values (the transform lives inside the model), one named
input per feature column:

* id, categorical and text features: ``tf.string`` of shape ``(batch,)``
* numeric features: ``float32`` of shape ``(batch,)``
* timestamp features: ``int64`` Unix seconds of shape ``(batch,)``

Input names are the column names made safe for SavedModel signatures
(``Unit Price`` -> ``Unit_Price``). The Trainer, Evaluator and Pusher all
build their batches with :func:`tower_batch`, and serving accepts the same
names, so nobody re-implements the mapping.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ml_pipeline.config.features import FeatureConfig

RAW_DTYPES = {"id": "string", "categorical": "string", "text": "string", "numeric": "float32", "timestamp": "int64"}


def input_name(column: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", column)
    return name if re.match(r"[A-Za-z]", name) else f"f_{name}"


def tower_inputs(features: FeatureConfig, tower: str) -> dict[str, tuple[str, str]]:
    """Input name -> (column, raw dtype) for one tower ("buyer" or "product")."""
    return {input_name(f.column): (f.column, RAW_DTYPES[f.kind]) for f in features.tower(tower).features}


def _column_values(table: pa.Table, column: str, dtype: str) -> np.ndarray:
    values = table.column(column)
    if dtype == "string":
        if pa.types.is_dictionary(values.type):
            return _dictionary_strings(values)
        return np.asarray(pc.fill_null(pc.cast(values, pa.string()), "").to_numpy(zero_copy_only=False), dtype=object)
    if dtype == "int64":
        if pa.types.is_timestamp(values.type):
            values = pc.cast(pc.cast(values, pa.timestamp("s")), pa.int64())
        return pc.fill_null(pc.cast(values, pa.int64()), 0).to_numpy(zero_copy_only=False)
    return pc.fill_null(pc.cast(values, pa.float32()), np.nan).to_numpy(zero_copy_only=False)


def _dictionary_strings(values: pa.ChunkedArray) -> np.ndarray:
    """Dictionary-encoded strings (how the streamed splits read them): each distinct value of a chunk
    becomes a Python string once, and the rows index into those, instead of one new string per row."""
    parts = []
    for chunk in values.chunks:
        words = pc.fill_null(pc.cast(chunk.dictionary, pa.string()), "").to_numpy(zero_copy_only=False)
        words = np.append(np.asarray(words, dtype=object), "")  # the last one stands for a null row
        parts.append(words[pc.fill_null(chunk.indices, len(words) - 1).to_numpy(zero_copy_only=False)])
    return np.concatenate(parts) if parts else np.empty(0, dtype=object)


def tower_batch(table: pa.Table, features: FeatureConfig, tower: str) -> dict[str, np.ndarray]:
    """Numpy arrays for one tower's inputs from an Arrow table of ExampleGen rows."""
    return {
        name: _column_values(table, column, dtype) for name, (column, dtype) in tower_inputs(features, tower).items()
    }


def target_values(table: pa.Table) -> np.ndarray:
    return pc.fill_null(pc.cast(table.column("target"), pa.float32()), 0.0).to_numpy(zero_copy_only=False)
