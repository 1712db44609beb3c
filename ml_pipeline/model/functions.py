"""Keras models and serving signatures run over numpy inputs, in batches, through one interface.

:class:`ModelFunctions` gives the query, candidate and rating functions of a
Trainer output (Keras models) or of a pushed serving SavedModel: the Trainer's
per-epoch metrics, the Evaluator (a candidate and its baseline) and the
serving export all run models through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_BATCH_SIZE = 8192


def _tf():
    import tensorflow as tf  # imported lazily: importing this module stays cheap

    return tf


def _np_to_tf_dtype(dtype: str):
    tf = _tf()
    return {"string": tf.string, "float32": tf.float32, "int64": tf.int64}.get(str(dtype), tf.as_dtype(str(dtype)))


# -- running Keras models and signatures over numpy batches ---------------------
def model_input_specs(model) -> dict[str, Any]:
    """Input name -> ``tf.TensorSpec([None], dtype)`` of a Keras functional model with named inputs."""
    tf = _tf()
    inputs = model.input
    if not isinstance(inputs, Mapping):
        inputs = {tensor.name: tensor for tensor in (inputs if isinstance(inputs, (list, tuple)) else [inputs])}
    return {name: tf.TensorSpec([None], _np_to_tf_dtype(tensor.dtype), name=name) for name, tensor in inputs.items()}


def as_tensor(values, spec):
    tf = _tf()
    values = np.asarray(values)
    if spec.dtype == tf.string:
        return tf.constant(values.astype(object) if values.dtype != object else values, dtype=tf.string)
    return tf.constant(values, dtype=spec.dtype)


def select_inputs(inputs: Mapping[str, np.ndarray], specs: Mapping[str, Any], what: str = "the model") -> dict:
    """The arrays ``specs`` names, taken from ``inputs`` (extra inputs are ignored, missing ones are an error)."""
    missing = sorted(set(specs) - set(inputs))
    if missing:
        raise KeyError(f"{what} needs inputs {missing}, which the features do not provide (have {sorted(inputs)})")
    return {name: inputs[name] for name in specs}


def predict_batched(
    function: Callable[[dict], Any],
    specs: Mapping[str, Any],
    inputs: Mapping[str, np.ndarray],
    batch_size: int = DEFAULT_BATCH_SIZE,
    output: str | None = None,
) -> np.ndarray:
    """Run ``function`` (a Keras model or a signature) over numpy inputs in batches; one float32 array back.

    ``output`` picks one entry when the function returns a dict; a trailing
    dimension of 1 (a rating) is squeezed.
    """
    arrays = select_inputs(inputs, specs)
    n = len(next(iter(arrays.values()))) if arrays else 0
    parts = []
    for start in range(0, n, batch_size):
        batch = {name: as_tensor(values[start : start + batch_size], specs[name]) for name, values in arrays.items()}
        result = function(batch)
        if isinstance(result, Mapping):
            result = result[output] if output else next(iter(result.values()))
        parts.append(np.asarray(result, dtype=np.float32))
    if not parts:
        return np.zeros((0,), dtype=np.float32)
    out = np.concatenate(parts, axis=0)
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    return out


class ModelFunctions:
    """Query, candidate and rating functions over numpy inputs, from Keras models or a serving SavedModel.

    The Evaluator scores a candidate (Keras) and a baseline (a Trainer
    output or a pushed SavedModel) through this one interface.
    """

    def __init__(self, query, candidate, rating, query_specs, candidate_specs, rating_specs, description: str):
        self._query, self._candidate, self._rating = query, candidate, rating
        self.query_specs, self.candidate_specs, self.rating_specs = query_specs, candidate_specs, rating_specs
        self.description = description

    @property
    def has_rating(self) -> bool:
        return self._rating is not None

    @classmethod
    def from_keras(cls, trained, description: str = "Keras models") -> ModelFunctions:
        tf = _tf()

        def wrap(model):
            if model is None:
                return None
            call = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
            return call

        rating = getattr(trained, "rating", None)
        return cls(
            wrap(trained.query),
            wrap(trained.candidate),
            wrap(rating),
            model_input_specs(trained.query),
            model_input_specs(trained.candidate),
            model_input_specs(rating) if rating is not None else None,
            description,
        )

    @classmethod
    def from_saved_model(cls, path: str | Path) -> ModelFunctions:
        from ml_pipeline.serving.model import load_serving_model

        loaded = load_serving_model(path)
        signatures = loaded.signatures

        def wrap(name, output):
            if name not in signatures:
                return None, None
            signature = signatures[name]
            specs = dict(signature.structured_input_signature[1])
            return (lambda batch: signature(**batch)[output]), specs

        query, query_specs = wrap("query_embedding", "embedding")
        candidate, candidate_specs = wrap("candidate_embedding", "embedding")
        if query is None or candidate is None:
            raise ValueError(f"{path} is a SavedModel without query_embedding/candidate_embedding signatures")
        rating, rating_specs = wrap("predict_rating", "rating")
        return cls(query, candidate, rating, query_specs, candidate_specs, rating_specs, f"serving model {path}")

    def embed_queries(self, inputs, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        return self._two_d(predict_batched(self._query, self.query_specs, inputs, batch_size))

    def embed_candidates(self, inputs, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        return self._two_d(predict_batched(self._candidate, self.candidate_specs, inputs, batch_size))

    def predict_ratings(self, inputs, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        if self._rating is None:
            raise ValueError(f"{self.description} has no rating head")
        return predict_batched(self._rating, self.rating_specs, inputs, batch_size).reshape(-1)

    @staticmethod
    def _two_d(array: np.ndarray) -> np.ndarray:
        return array.reshape(len(array), -1)
