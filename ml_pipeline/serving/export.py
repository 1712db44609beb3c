"""The serving model's export: one SavedModel that answers everything a recommender endpoint needs.

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
  them in the graph. Its parameters are the model config's ``scann``
  (``"auto"``: chosen from the catalog's size and checked for recall@K on it,
  :mod:`ml_pipeline.serving.scann`). The ops work with TF 2.20, but they are a custom op
  library: whoever loads such a model must register them first
  (``from scann import scann_ops``) — :func:`ml_pipeline.serving.model.load_serving_model`
  does — and a
  stock TensorFlow Serving binary cannot load it;
* ranking models (no retrieval objective, so a dot product between towers
  means nothing): every catalog product is scored with the rating model for
  each buyer; the catalog's raw product features are stored in the model.

``K`` is ``max(model.retrieval_k)`` (at most the catalog size).
``assets/catalog_ids.txt`` lists the catalog (one product id a line, in index
order) and ``assets/serving_config.json`` describes the model (retrieval
algorithm, K, signatures and their inputs), so a server can read what it
needs without TensorFlow.

:class:`ml_pipeline.serving.model.Recommender` loads the SavedModel and answers
``recommend(features, k)``; the TF-Serving-compatible HTTP server
(:mod:`ml_pipeline.serving.server`) builds on its ``predict``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ml_pipeline.config.model import ModelType
from ml_pipeline.model.functions import DEFAULT_BATCH_SIZE, ModelFunctions, as_tensor, model_input_specs
from ml_pipeline.serving.model import CATALOG_IDS, SERVING_CONFIG, SERVING_FORMAT


def _tf():
    import tensorflow as tf  # imported lazily: importing this module stays cheap

    return tf


# -- export ------------------------------------------------------------------------
def _serving_module(  # noqa: C901 (one tf.Module: its signatures are defined together)
    query,
    candidate,
    rating,
    catalog_ids,
    catalog_embeddings,
    catalog_inputs,
    k,
    algorithm,
    by_rating: bool,
    scann_params="auto",
    query_embeddings=None,
):
    tf = _tf()

    class ServingModule(tf.Module):
        def __init__(self):
            super().__init__(name="serving_model")
            self.query_model = query
            self.candidate_model = candidate
            self.rating_model = rating
            self.k = int(k)
            self.catalog_ids = tf.Variable(
                np.asarray(catalog_ids, dtype=object), trainable=False, dtype=tf.string, name="catalog_ids"
            )
            self.query_specs = model_input_specs(query)
            self.candidate_specs = model_input_specs(candidate)
            self.rating_specs = model_input_specs(rating) if rating is not None else None
            self.scann_state = None
            self.catalog_embeddings = None
            self.catalog_inputs = None
            if by_rating:
                # raw catalog product features, scored with the rating model for each buyer
                self.catalog_inputs = {
                    name: tf.Variable(
                        as_tensor(values, self.rating_specs[name]), trainable=False, name=f"catalog_{name}"
                    )
                    for name, values in catalog_inputs.items()
                    if name in self.rating_specs
                }
            elif algorithm == "scann":
                from ml_pipeline.serving import scann

                self.scann_state, self.scann_settings = scann.build(
                    catalog_embeddings, self.k, scann_params, query_embeddings
                )
                self.scann_leaves = self.scann_settings.get("num_leaves_to_search")
                self.scann_reorder = self.scann_settings.get("reorder")
            else:
                self.catalog_embeddings = tf.Variable(
                    np.asarray(catalog_embeddings, dtype=np.float32), trainable=False, name="catalog_embeddings"
                )

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
                indices, scores = searcher.search_batched(
                    query_embeddings,
                    final_num_neighbors=self.k,
                    pre_reorder_num_neighbors=self.scann_reorder,
                    leaves_to_search=self.scann_leaves,
                )
            else:
                all_scores = tf.matmul(query_embeddings, self.catalog_embeddings, transpose_b=True)
                scores, indices = tf.math.top_k(all_scores, k=self.k)
            return {"product_ids": tf.gather(self.catalog_ids, indices), "scores": scores}

        def _top_k_by_rating(self, inputs):
            catalog = {name: tf.convert_to_tensor(variable) for name, variable in self.catalog_inputs.items()}
            size = tf.shape(self.catalog_ids)[0]
            buyer_names = [name for name in self.rating_specs if name not in catalog]

            def one_buyer(index):
                buyer = {name: tf.repeat(inputs[name][index : index + 1], size) for name in buyer_names}
                ratings = tf.reshape(tf.cast(self.rating_model({**catalog, **buyer}, training=False), tf.float32), [-1])
                values, indices = tf.math.top_k(ratings, k=self.k)
                return values, indices

            count = tf.shape(next(iter(inputs.values())))[0]
            scores, indices = tf.map_fn(one_buyer, tf.range(count), fn_output_signature=(tf.float32, tf.int32))
            return {"product_ids": tf.gather(self.catalog_ids, indices), "scores": scores}

    module = ServingModule()
    signatures = {
        "serving_default": tf.function(module.top_k, input_signature=[module.query_specs]),
        "query_embedding": tf.function(module.query_embedding, input_signature=[module.query_specs]),
        "candidate_embedding": tf.function(module.candidate_embedding, input_signature=[module.candidate_specs]),
    }
    if rating is not None:
        signatures["predict_rating"] = tf.function(module.predict_rating, input_signature=[module.rating_specs])
    if by_rating:
        missing = sorted(set(module.rating_specs) - set(module.catalog_inputs) - set(module.query_specs))
        if missing:
            raise ValueError(
                f"the rating model needs inputs {missing} that neither the buyer inputs nor the catalog provide"
            )
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
    scann_params="auto",
    query_inputs: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Write the serving SavedModel for ``trained`` (query, candidate, rating|None Keras models) to ``path``.

    ``catalog_inputs`` are the product tower's raw inputs for every catalog
    product (``tower_batch(catalog, features, "product")``), in the order of
    ``catalog_ids``. ``query_inputs`` (the buyer tower's raw inputs for a
    sample of rows) are the queries ScaNN's recall is checked with (else the
    products' own embeddings). Returns the serving config written to the assets.
    """
    tf = _tf()
    path = Path(path)
    catalog_ids = [str(pid) for pid in catalog_ids]
    if not catalog_ids:
        raise ValueError("the catalog is empty: nothing to serve")
    rating = getattr(trained, "rating", None)
    # a model without a retrieval objective (ranking): a dot product between its towers means nothing, so
    # top-K is by the rating model over the whole catalog
    by_rating = not ModelType(model_type).has_retrieval
    if by_rating and rating is None:
        raise ValueError("a ranking model needs its rating model to serve top-K")
    k = int(min(k, len(catalog_ids)))
    functions = ModelFunctions.from_keras(trained)
    embeddings = None
    if not by_rating:
        embeddings = functions.embed_candidates(catalog_inputs, batch_size)
    effective_algorithm = "brute_force" if by_rating else algorithm
    query_embeddings = None
    if effective_algorithm == "scann" and query_inputs:
        query_embeddings = functions.embed_queries(query_inputs, batch_size)
    module, concrete = _serving_module(
        trained.query,
        trained.candidate,
        rating,
        catalog_ids,
        embeddings,
        catalog_inputs,
        k,
        effective_algorithm,
        by_rating,
        scann_params,
        query_embeddings,
    )
    tf.saved_model.save(module, str(path), signatures=concrete)

    def spec_dict(specs):
        return {name: spec.dtype.name for name, spec in specs.items()}

    config = {
        "format": SERVING_FORMAT,
        "model_type": str(model_type),
        "retrieval": effective_algorithm,
        "scored_by": "rating" if by_rating else "dot_product",
        "k": k,
        "catalog_size": len(catalog_ids),
        "embedding_dim": int(embeddings.shape[1]) if embeddings is not None else None,
        "scann": getattr(module, "scann_settings", None),
        "signatures": {
            name: {
                "inputs": spec_dict(dict(fn.structured_input_signature[1])),
                "outputs": sorted(fn.structured_outputs),
            }
            for name, fn in concrete.items()
        },
    }
    assets = path / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    (assets / CATALOG_IDS).write_text("".join(f"{pid}\n" for pid in catalog_ids))
    (assets / SERVING_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    return config
