"""The recommender's Keras models: built from the Transform artifact, trained by the Trainer, loaded anywhere.

:func:`load_trained` is the one way to load a Trainer output: it registers
the custom layers (:mod:`ml_pipeline.model.layers`) and loads

* ``query_model.keras``: buyer tower raw inputs -> ``[batch, output_dim]`` float32;
* ``candidate_model.keras``: product tower raw inputs -> ``[batch, output_dim]`` float32;
* ``rating_model.keras`` (ranking and multitask only): buyer + product raw
  inputs -> ``[batch]`` float32, the predicted rating in the target's units.

Raw inputs are one ``[batch]`` tensor per feature column, named
``input_name(column)`` (strings ``tf.string``, numbers float32, timestamps
int64 Unix seconds); build them with :func:`ml_pipeline.model.inputs.tower_batch`.

Importing this package does not import TensorFlow; :func:`load_trained` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUERY_MODEL = "query_model.keras"
CANDIDATE_MODEL = "candidate_model.keras"
RATING_MODEL = "rating_model.keras"


@dataclass
class TrainedModels:
    query: Any  # keras.Model
    candidate: Any  # keras.Model
    rating: Any | None = None  # keras.Model, or None for retrieval models


def trainer_output_folder(folder: str | Path) -> Path:
    """The folder holding the ``.keras`` files: ``folder`` itself or its ``output/``."""
    folder = Path(folder).expanduser()
    if not (folder / QUERY_MODEL).is_file() and (folder / "output" / QUERY_MODEL).is_file():
        return folder / "output"
    return folder


def load_trained(folder: str | Path) -> TrainedModels:
    """Load a Trainer output (its ``output/`` folder or the stage folder above it)."""
    import keras

    from ml_pipeline.model import layers  # noqa: F401  (registers the custom layers)

    folder = trainer_output_folder(folder)
    for name in (QUERY_MODEL, CANDIDATE_MODEL):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} holds no {name}: not a Trainer output")

    def load(name: str):
        return keras.models.load_model(folder / name, compile=False, custom_objects=layers.CUSTOM_OBJECTS)

    rating = load(RATING_MODEL) if (folder / RATING_MODEL).is_file() else None
    return TrainedModels(load(QUERY_MODEL), load(CANDIDATE_MODEL), rating)


__all__ = ["TrainedModels", "load_trained", "trainer_output_folder", "QUERY_MODEL", "CANDIDATE_MODEL", "RATING_MODEL"]
