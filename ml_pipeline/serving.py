"""The serving model: one SavedModel that answers everything a recommender endpoint needs.

:func:`export_serving_model` writes a SavedModel (``tf.saved_model.save`` of a
``tf.Module``) whose functions take *raw* feature values, named as
:func:`ml_pipeline.model.inputs.input_name` names them — the transform lives
inside the Trainer's Keras models, so nothing is re-implemented for serving.

Signatures
==========

=======================  ==============================================  =====================================
signature                inputs                                          outputs
=======================  ==============================================  =====================================
``serving_default``      the buyer tower's raw inputs, shape ``[batch]``  ``product_ids`` ``[batch, K]`` string,
                                                                         ``scores`` ``[batch, K]`` float32,
                                                                         best first
``query_embedding``      the buyer tower's raw inputs                    ``embedding`` ``[batch, dim]``
``candidate_embedding``  the product tower's raw inputs                  ``embedding`` ``[batch, dim]``
``predict_rating``       buyer + product raw inputs (only with a head)   ``rating`` ``[batch]``, original units
=======================  ==============================================  =====================================

``serving_default`` searches the WHOLE catalog, embedded at export time:

* retrieval and multitask models, ``brute_force``: a constant (non-trainable
  variable) ``[catalog, dim]`` embedding matrix, one matmul and
  ``tf.math.top_k`` — exact;
* retrieval and multitask models, ``scann``: a ScaNN searcher built with
  ScaNN's TensorFlow ops (``scann.scann_ops``) and serialised *inside* the
  SavedModel as variables (``ScannState``); the searcher is recreated from
  them in the graph. The ops work with TF 2.20, but they are a custom op
  library: whoever loads such a model must register them first
  (``from scann import scann_ops``) — :func:`load_serving_model` does — and a
  stock TensorFlow Serving binary cannot load it;
* ranking models (no retrieval objective, so a dot product between towers
  means nothing): every catalog product is scored with the rating model for
  each buyer; the catalog's raw product features are stored in the model.

``K`` is ``max(model.retrieval_k)`` (at most the catalog size).
``assets/catalog_ids.txt`` lists the catalog (one product id a line, in index
order) and ``assets/serving_config.json`` describes the model (retrieval
algorithm, K, signatures and their inputs), so a server can read what it
needs without TensorFlow.

:class:`Recommender` loads the SavedModel and answers ``recommend(features, k)``;
a TF-Serving-compatible HTTP server builds on its :meth:`Recommender.predict`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SERVING_CONFIG = "serving_config.json"
CATALOG_IDS = "catalog_ids.txt"
SERVING_FORMAT = 1
DEFAULT_BATCH_SIZE = 8192

# How ScaNN is configured for a catalog of n products and a top-K of k: below
# BRUTE_FORCE_BELOW products it scores exactly; from TREE_FROM products it
# partitions (about sqrt(n) leaves, 10% of them searched); in between it scores
# with anisotropic hashing and re-scores the best candidates exactly.
SCANN_BRUTE_FORCE_BELOW = 1_000
SCANN_TREE_FROM = 20_000


def _tf():
    import tensorflow as tf  # imported lazily: ``import ml_pipeline.serving`` stays cheap

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


def _as_tensor(values, spec):
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
    function: Callable[[dict], Any], specs: Mapping[str, Any], inputs: Mapping[str, np.ndarray],
    batch_size: int = DEFAULT_BATCH_SIZE, output: str | None = None,
) -> np.ndarray:
    """Run ``function`` (a Keras model or a signature) over numpy inputs in batches; one float32 array back.

    ``output`` picks one entry when the function returns a dict; a trailing
    dimension of 1 (a rating) is squeezed.
    """
    arrays = select_inputs(inputs, specs)
    n = len(next(iter(arrays.values()))) if arrays else 0
    parts = []
    for start in range(0, n, batch_size):
        batch = {name: _as_tensor(values[start:start + batch_size], specs[name]) for name, values in arrays.items()}
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
    def from_keras(cls, trained, description: str = "Keras models") -> "ModelFunctions":
        tf = _tf()

        def wrap(model):
            if model is None:
                return None
            call = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)
            return call

        rating = getattr(trained, "rating", None)
        return cls(
            wrap(trained.query), wrap(trained.candidate), wrap(rating),
            model_input_specs(trained.query), model_input_specs(trained.candidate),
            model_input_specs(rating) if rating is not None else None, description,
        )

    @classmethod
    def from_saved_model(cls, path: str | Path) -> "ModelFunctions":
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


def is_serving_model(path: str | Path) -> bool:
    return (Path(path) / "saved_model.pb").is_file()


# -- ScaNN -------------------------------------------------------------------------
def scann_settings(n: int, k: int) -> dict[str, Any]:
    """The ScaNN configuration used for a catalog of ``n`` products and a top-``k`` (recorded in the config)."""
    if n < SCANN_BRUTE_FORCE_BELOW:
        return {"n": n, "k": k, "mode": "brute_force"}
    settings: dict[str, Any] = {"n": n, "k": k, "mode": "ah", "dims_per_block": 2,
                                "anisotropic_quantization_threshold": 0.2,
                                "reorder": int(min(n, max(10 * k, 250)))}
    if n >= SCANN_TREE_FROM:
        leaves = int(round(math.sqrt(n)))
        settings.update(mode="tree_ah", num_leaves=leaves, num_leaves_to_search=max(1, math.ceil(leaves / 10)),
                        training_sample_size=int(min(n, 250_000)))
    return settings


def build_scann_state(embeddings: np.ndarray, k: int):
    """A ScaNN searcher (TF ops) over ``embeddings`` by dot product, serialised as a ``tf.Module`` of variables."""
    from scann import scann_ops

    db = np.ascontiguousarray(embeddings, dtype=np.float32)
    settings = scann_settings(len(db), k)
    builder = scann_ops.builder(db, k, "dot_product")
    if settings["mode"] == "brute_force":
        builder = builder.score_brute_force()
    else:
        if settings["mode"] == "tree_ah":
            builder = builder.tree(num_leaves=settings["num_leaves"],
                                   num_leaves_to_search=settings["num_leaves_to_search"],
                                   training_sample_size=settings["training_sample_size"])
        builder = builder.score_ah(settings["dims_per_block"],
                                   anisotropic_quantization_threshold=settings["anisotropic_quantization_threshold"])
        builder = builder.reorder(settings["reorder"])
    return builder.build().serialize_to_module(), settings


# -- export ------------------------------------------------------------------------
def _serving_module(query, candidate, rating, catalog_ids, catalog_embeddings, catalog_inputs, k,
                    algorithm, model_type):
    tf = _tf()

    class ServingModule(tf.Module):
        def __init__(self):
            super().__init__(name="serving_model")
            self.query_model = query
            self.candidate_model = candidate
            self.rating_model = rating
            self.k = int(k)
            self.catalog_ids = tf.Variable(np.asarray(catalog_ids, dtype=object), trainable=False, dtype=tf.string,
                                           name="catalog_ids")
            self.query_specs = model_input_specs(query)
            self.candidate_specs = model_input_specs(candidate)
            self.rating_specs = model_input_specs(rating) if rating is not None else None
            self.scann_state = None
            self.catalog_embeddings = None
            self.catalog_inputs = None
            if model_type == "ranking":
                # raw catalog product features, scored with the rating model for each buyer
                self.catalog_inputs = {
                    name: tf.Variable(_as_tensor(values, self.rating_specs[name]), trainable=False, name=f"catalog_{name}")
                    for name, values in catalog_inputs.items() if name in self.rating_specs
                }
            elif algorithm == "scann":
                self.scann_state, self.scann_settings = build_scann_state(catalog_embeddings, self.k)
            else:
                self.catalog_embeddings = tf.Variable(np.asarray(catalog_embeddings, dtype=np.float32),
                                                      trainable=False, name="catalog_embeddings")

        def query_embedding(self, inputs):
            return {"embedding": tf.cast(self.query_model(inputs, training=False), tf.float32)}

        def candidate_embedding(self, inputs):
            return {"embedding": tf.cast(self.candidate_model(inputs, training=False), tf.float32)}

        def predict_rating(self, inputs):
            return {"rating": tf.reshape(tf.cast(self.rating_model(inputs, training=False), tf.float32), [-1])}

        def top_k(self, inputs):
            if self.catalog_inputs is not None:
                return self._top_k_by_rating(inputs)
            query_embeddings = tf.cast(self.query_model(inputs, training=False), tf.float32)
            if self.scann_state is not None:
                from scann import scann_ops

                searcher = scann_ops.searcher_from_module(self.scann_state)
                indices, scores = searcher.search_batched(query_embeddings, final_num_neighbors=self.k)
            else:
                all_scores = tf.matmul(query_embeddings, self.catalog_embeddings, transpose_b=True)
                scores, indices = tf.math.top_k(all_scores, k=self.k)
            return {"product_ids": tf.gather(self.catalog_ids, indices), "scores": scores}

        def _top_k_by_rating(self, inputs):
            catalog = {name: tf.convert_to_tensor(variable) for name, variable in self.catalog_inputs.items()}
            size = tf.shape(self.catalog_ids)[0]
            buyer_names = [name for name in self.rating_specs if name not in catalog]

            def one_buyer(index):
                buyer = {name: tf.repeat(inputs[name][index:index + 1], size) for name in buyer_names}
                ratings = tf.reshape(tf.cast(self.rating_model({**catalog, **buyer}, training=False), tf.float32), [-1])
                values, indices = tf.math.top_k(ratings, k=self.k)
                return values, indices

            count = tf.shape(next(iter(inputs.values())))[0]
            scores, indices = tf.map_fn(one_buyer, tf.range(count),
                                        fn_output_signature=(tf.float32, tf.int32))
            return {"product_ids": tf.gather(self.catalog_ids, indices), "scores": scores}

    module = ServingModule()
    signatures = {
        "serving_default": tf.function(module.top_k, input_signature=[module.query_specs]),
        "query_embedding": tf.function(module.query_embedding, input_signature=[module.query_specs]),
        "candidate_embedding": tf.function(module.candidate_embedding, input_signature=[module.candidate_specs]),
    }
    if rating is not None:
        signatures["predict_rating"] = tf.function(module.predict_rating, input_signature=[module.rating_specs])
    if model_type == "ranking":
        missing = sorted(set(module.rating_specs) - set(module.catalog_inputs) - set(module.query_specs))
        if missing:
            raise ValueError(f"the rating model needs inputs {missing} that neither the buyer inputs nor the "
                             "catalog provide")
    # keep the functions reachable from the module so they are saved as its methods too
    for name, function in signatures.items():
        setattr(module, f"sig_{name}", function)
    return module, {name: function.get_concrete_function() for name, function in signatures.items()}


def export_serving_model(
    trained,
    catalog_ids: Sequence[str],
    catalog_inputs: Mapping[str, np.ndarray],
    path: str | Path,
    k: int,
    algorithm: str = "brute_force",
    model_type: str = "retrieval",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, Any]:
    """Write the serving SavedModel for ``trained`` (query, candidate, rating|None Keras models) to ``path``.

    ``catalog_inputs`` are the product tower's raw inputs for every catalog
    product (``tower_batch(catalog, features, "product")``), in the order of
    ``catalog_ids``. Returns the serving config written to the assets.
    """
    tf = _tf()
    path = Path(path)
    catalog_ids = [str(pid) for pid in catalog_ids]
    if not catalog_ids:
        raise ValueError("the catalog is empty: nothing to serve")
    rating = getattr(trained, "rating", None)
    if model_type == "ranking" and rating is None:
        raise ValueError("a ranking model needs its rating model to serve top-K")
    k = int(min(k, len(catalog_ids)))
    functions = ModelFunctions.from_keras(trained)
    embeddings = None
    if model_type != "ranking":
        embeddings = functions.embed_candidates(catalog_inputs, batch_size)
    effective_algorithm = algorithm if model_type != "ranking" else "brute_force"
    module, concrete = _serving_module(trained.query, trained.candidate, rating, catalog_ids, embeddings,
                                       catalog_inputs, k, effective_algorithm, model_type)
    tf.saved_model.save(module, str(path), signatures=concrete)

    def spec_dict(specs):
        return {name: spec.dtype.name for name, spec in specs.items()}

    config = {
        "format": SERVING_FORMAT,
        "model_type": model_type,
        "retrieval": effective_algorithm,
        "scored_by": "rating" if model_type == "ranking" else "dot_product",
        "k": k,
        "catalog_size": len(catalog_ids),
        "embedding_dim": int(embeddings.shape[1]) if embeddings is not None else None,
        "scann": getattr(module, "scann_settings", None),
        "signatures": {
            name: {"inputs": spec_dict(dict(fn.structured_input_signature[1])),
                   "outputs": sorted(fn.structured_outputs)}
            for name, fn in concrete.items()
        },
    }
    assets = path / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    (assets / CATALOG_IDS).write_text("".join(f"{pid}\n" for pid in catalog_ids))
    (assets / SERVING_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    return config


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
                values = np.array([""] * rows, dtype=object) if spec.dtype == tf.string else \
                    np.full(rows, np.nan if spec.dtype.is_floating else 0)
            try:
                if spec.dtype == tf.string:
                    values = np.array(["" if v is None else str(v) for v in values], dtype=object)
                elif spec.dtype.is_floating:
                    values = np.array([np.nan if v is None or v == "" else float(v) for v in values],
                                      dtype=np.float32)
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
