"""The eight stages and the artifacts they hand each other (each artifact's type, and its readers, are in
:mod:`ml_pipeline.artifact_types`; a stage never imports another stage's module).

================  ===============  ==========================================================
stage             reads            writes (under its ``output/`` folder)
================  ===============  ==========================================================
Compile           the spec         ``compiled_spec.json`` (defaults resolved), ``fingerprint``
ExampleGen        the source       ``train/``, ``eval/``, ``test/`` Parquet parts of the mapped
                                   rows; ``catalog.parquet`` (one row per product: product_id,
                                   product feature columns, ``train_count``)
StatisticsGen     ExampleGen       ``stats.pb`` (TFDV DatasetFeatureStatisticsList, one dataset
                                   per split), ``summary.json`` for the UI
SchemaGen         ExampleGen,      ``schema.pbtxt`` (TFDV Schema), ``anomalies.json``,
                  StatisticsGen    ``anomalies.pbtxt`` (TFDV Anomalies)
Transform         ExampleGen       ``transform.json`` + ``vocab/<input name>.txt``: vocabularies,
                                   normalisation, bucket boundaries, cross sizes, target stats
Trainer           ExampleGen,      ``query_model.keras``, ``candidate_model.keras``,
                  Transform        ``rating_model.keras`` (ranking, multitask), ``history.json``
Evaluator         ExampleGen,      ``evaluation.json`` (candidate vs popularity baseline vs
                  Trainer          baseline model), ``blessing.json`` (the verdict and its rules)
Pusher            ExampleGen,      ``serving_model/`` (SavedModel with query, candidate, top-K
                  Trainer,         and rating signatures, catalog embedded) and a copy at the
                  Evaluator        push destination
================  ===============  ==========================================================
"""

from __future__ import annotations

from ml_pipeline.spec import STAGES
from ml_pipeline.stages.base import Stage


def registry() -> dict[str, Stage]:
    """Every stage by name, in pipeline order (``ml_pipeline.spec.STAGES``)."""
    from ml_pipeline.stages.compile import Compile
    from ml_pipeline.stages.evaluator import Evaluator
    from ml_pipeline.stages.example_gen import ExampleGen
    from ml_pipeline.stages.pusher import Pusher
    from ml_pipeline.stages.schema_gen import SchemaGen
    from ml_pipeline.stages.statistics_gen import StatisticsGen
    from ml_pipeline.stages.trainer import Trainer
    from ml_pipeline.stages.transform import Transform

    stages = [Compile(), ExampleGen(), StatisticsGen(), SchemaGen(), Transform(), Trainer(), Evaluator(), Pusher()]
    return {stage.name: stage for stage in sorted(stages, key=lambda stage: STAGES.index(stage.name))}
