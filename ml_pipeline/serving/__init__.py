"""Serving: the export of a blessed model, and the endpoint that answers from it.

* :mod:`~ml_pipeline.serving.export`: the serving SavedModel the Pusher writes (top-K, embeddings, rating);
* :mod:`~ml_pipeline.serving.model`: loading it (:class:`~ml_pipeline.serving.model.Recommender`);
* :mod:`~ml_pipeline.serving.buyers`: the buyers lookup ``/recommend`` reads, and how it is built;
* :mod:`~ml_pipeline.serving.store`: the models a server's config names, loaded and swapped in place;
* :mod:`~ml_pipeline.serving.requests`: what a request may ask, and the answers;
* :mod:`~ml_pipeline.serving.server`: the TF-Serving-compatible HTTP endpoint
  (``python -m ml_pipeline.serving.server``).

Importing any of these imports no TensorFlow until a model is exported or loaded.
"""
