"""Loading a serving model (:mod:`ml_pipeline.serving.export` writes it) and answering from it.

``assets/serving_config.json`` describes the model (retrieval algorithm, K,
signatures and their inputs) and ``assets/catalog_ids.txt`` lists the catalog,
so a reader learns what it needs without TensorFlow; :class:`Recommender`
loads the SavedModel and answers ``recommend(features, k)`` and TF Serving's
row and columnar requests (:meth:`Recommender.predict`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SERVING_CONFIG = "serving_config.json"
CATALOG_IDS = "catalog_ids.txt"
SERVING_FORMAT = 1


def _tf():
    import tensorflow as tf  # imported lazily: importing this module stays cheap

    return tf


def is_serving_model(path: str | Path) -> bool:
    return (Path(path) / "saved_model.pb").is_file()


# -- loading -----------------------------------------------------------------------
def read_serving_config(path: str | Path) -> dict[str, Any]:
    config_file = Path(path) / "assets" / SERVING_CONFIG
    return json.loads(config_file.read_text()) if config_file.is_file() else {}


def register_scann_ops() -> None:
    """Register ScaNN's custom TF ops in this process (needed before loading a ``scann`` serving model)."""
    try:
        from scann import scann_ops  # noqa: F401  (loading the module registers the op library)
    except ImportError as error:  # pragma: no cover - scann is a dependency of the project
        raise RuntimeError("this serving model searches with ScaNN: install scann==1.4.2 to load it") from error


def load_serving_model(path: str | Path):
    """``tf.saved_model.load`` of a serving model, after registering ScaNN's ops when the model uses them."""
    path = Path(path)
    if not is_serving_model(path):
        raise FileNotFoundError(f"{path} is not a SavedModel folder (no saved_model.pb)")
    if read_serving_config(path).get("retrieval") == "scann":
        register_scann_ops()
    return _tf().saved_model.load(str(path))


class Recommender:
    """Answers recommendation requests from a serving SavedModel.

    >>> recommender = Recommender("/models/b2b-recs")
    >>> recommender.recommend({"buyer_id": "c1", "segment": "retail"}, k=10)
    [("p42", 3.1), ...]
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = read_serving_config(self.path)
        self.model = load_serving_model(self.path)
        self.signatures = dict(self.model.signatures)
        self.k = int(self.config.get("k") or self.signatures["serving_default"].structured_outputs["scores"].shape[1])
        ids_file = self.path / "assets" / CATALOG_IDS
        self.catalog_ids = ids_file.read_text().splitlines() if ids_file.is_file() else None

    def input_specs(self, signature: str = "serving_default") -> dict[str, Any]:
        return dict(self.signatures[signature].structured_input_signature[1])

    def _columns(self, signature: str, inputs: Mapping[str, Any], rows: int | None = None) -> dict[str, Any]:
        """Tensors for a signature from column-wise inputs; a missing input gets the null value the
        training data would have had ("" for strings, NaN for numbers, 0 for timestamps)."""
        from ml_pipeline.model.inputs import input_name

        tf = _tf()
        specs = self.input_specs(signature)
        # inputs may be named by column ("Unit Price") or by input name ("Unit_Price")
        by_name = {input_name(key): value for key, value in inputs.items()}
        by_name.update({key: value for key, value in inputs.items() if key in specs})
        known = [np.asarray(by_name[name], dtype=object).reshape(-1) for name in specs if name in by_name]
        if rows is None:
            rows = max((len(values) for values in known), default=1)
        tensors = {}
        for name, spec in specs.items():
            if name in by_name:
                values = np.asarray(by_name[name], dtype=object).reshape(-1)
                if len(values) == 1 and rows > 1:
                    values = np.repeat(values, rows)
            else:
                values = (
                    np.array([""] * rows, dtype=object)
                    if spec.dtype == tf.string
                    else np.full(rows, np.nan if spec.dtype.is_floating else 0)
                )
            try:
                if spec.dtype == tf.string:
                    values = np.array(["" if v is None else str(v) for v in values], dtype=object)
                elif spec.dtype.is_floating:
                    values = np.array([np.nan if v is None or v == "" else float(v) for v in values], dtype=np.float32)
                else:
                    values = np.array([0 if v is None or v == "" else int(v) for v in values], dtype=np.int64)
            except (TypeError, ValueError, OverflowError) as error:  # 1e300 as an int64, "abc" as a number
                raise ValueError(f"input '{name}': {error}") from None
            tensors[name] = tf.constant(values, dtype=spec.dtype)
        return tensors

    def predict(self, inputs: Mapping[str, Any], signature: str = "serving_default") -> dict[str, np.ndarray]:
        """Run a signature on column-wise inputs (``{"buyer_id": ["c1", "c2"], ...}``); numpy outputs.

        This is TF Serving's "columnar" request format; :meth:`predict_instances`
        takes its row format.
        """
        if signature not in self.signatures:
            raise KeyError(f"no signature '{signature}' (this model has {sorted(self.signatures)})")
        try:
            outputs = self.signatures[signature](**self._columns(signature, inputs))
        except _tf().errors.InvalidArgumentError as error:  # inputs the graph refuses (shapes that disagree)
            raise ValueError(error.message) from None
        return {name: value.numpy() for name, value in outputs.items()}

    def predict_instances(self, instances: Sequence[Mapping[str, Any]], signature: str = "serving_default"):
        """TF Serving's row format: a list of ``{input: value}``; one dict of plain Python values per row."""
        if not instances:
            return []
        names = sorted({key for row in instances for key in row})
        columns = {name: [row.get(name) for row in instances] for name in names}
        outputs = self.predict(columns, signature)
        rows = []
        for index in range(len(instances)):
            row = {}
            for name, value in outputs.items():
                item = value[index]
                row[name] = _to_python(item)
            rows.append(row)
        return rows

    def recommend(self, buyer_features: Mapping[str, Any], k: int | None = None) -> list[tuple[str, float]]:
        """The top ``k`` (default: the exported K) products for one buyer, best first, as (product_id, score)."""
        k = self.k if k is None else int(k)
        if not 1 <= k <= self.k:
            raise ValueError(f"k must be between 1 and {self.k} (the K this model was exported with)")
        single = {name: [value] for name, value in buyer_features.items()}
        outputs = self.predict(single, "serving_default")
        ids, scores = outputs["product_ids"][0][:k], outputs["scores"][0][:k]
        return [(_to_python(pid), float(score)) for pid, score in zip(ids, scores)]

    def query_embedding(self, buyer_features: Mapping[str, Any]) -> np.ndarray:
        return self.predict({n: [v] for n, v in buyer_features.items()}, "query_embedding")["embedding"][0]

    def predict_rating(self, buyer_features: Mapping[str, Any], product_features: Mapping[str, Any]) -> float:
        row = {name: [value] for name, value in {**buyer_features, **product_features}.items()}
        return float(self.predict(row, "predict_rating")["rating"][0])


def _to_python(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_to_python(v) for v in value]
    if isinstance(value, np.generic):
        return value.item() if not isinstance(value, np.bytes_) else value.decode()
    return value
