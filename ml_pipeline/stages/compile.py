"""Compile: check the spec as a whole before any data is read, and freeze it.

Each section was validated on its own when the spec was parsed; this stage
checks how the sections fit together and with the source's real columns,
and reports every problem at once.
"""

from __future__ import annotations

import json

from ml_pipeline.artifact_types import CompiledSpec
from ml_pipeline.artifacts import fingerprint
from ml_pipeline.data import sources
from ml_pipeline.data.access import DataAccess
from ml_pipeline.errors import ConfigError, DataError, Problem
from ml_pipeline.metrics import RATING_METRICS
from ml_pipeline.redact import redact
from ml_pipeline.spec import PipelineSpec
from ml_pipeline.stages.base import Stage, StageContext, StageResult


def _prefixed(error: ConfigError | DataError, prefix: str) -> list[Problem]:
    return [Problem(f"{prefix}.{p.field}" if p.field else prefix, p.message) for p in error.problems]


def _check_bigquery(spec: PipelineSpec) -> list[Problem]:
    """Where the rows can be exported (the remote runner's containers), the source is dry-run for its columns
    and the mapping checked against them; elsewhere it is refused."""
    from ml_pipeline.data import bigquery

    if bigquery.export_uri() is None:
        return [Problem("dataset.source.kind", "BigQuery sources run on the Vertex AI runner, not locally")]
    try:
        bigquery.BigQueryRows.open(spec.dataset).query()
    except (ConfigError, DataError) as error:
        return _prefixed(error, "dataset")
    return []


def _check_source(spec: PipelineSpec, access: DataAccess | None) -> list[Problem]:
    if spec.dataset.source.kind == "bigquery":
        return _check_bigquery(spec)
    con = sources.connect()
    try:
        sources.register_source(con, spec.dataset.source, schema_only=True, access=access)
        sources.check_mapping(sources.source_columns(con), spec.dataset.mapping, spec.dataset.filters)
    except (ConfigError, DataError) as error:
        return _prefixed(error, "dataset")
    finally:
        con.close()
    return []


def _check_thresholds(spec: PipelineSpec) -> list[Problem]:
    problems = []
    model = spec.model
    for index, threshold in enumerate(spec.evaluator.thresholds):
        field = f"evaluator.thresholds[{index}].metric"
        metric = threshold.metric
        if metric in RATING_METRICS:
            if not model.has_rating_head:
                problems.append(Problem(field, f"{metric} needs a rating head; this is a {model.model_type} model"))
        elif not model.has_retrieval:
            problems.append(Problem(field, f"{metric} needs retrieval; this is a ranking model"))
        elif "_at_" in metric and int(metric.rsplit("_", 1)[1]) not in model.retrieval_k:
            problems.append(Problem(field, f"{metric} is not computed: model.retrieval_k is {model.retrieval_k}"))
    return problems


def check_spec(spec: PipelineSpec, access: DataAccess | None = None) -> list[Problem]:
    """Every problem with how the spec's parts fit together and with the source (read as ``access``
    allows; by default, as the spec's own ``data_access`` does)."""
    problems: list[Problem] = []
    try:
        spec.features.check_columns(spec.dataset.mapping.output_columns())
    except ConfigError as error:
        problems += _prefixed(error, "features")
    try:
        spec.model.check_against(spec.features)
    except ConfigError as error:
        problems += [Problem(p.field.replace("feature_config", "features"), p.message) for p in error.problems]
    if spec.model.has_rating_head and not spec.dataset.mapping.target:
        problems.append(Problem("dataset.mapping.target", f"a {spec.model.model_type} model needs a target column"))
    problems += _check_thresholds(spec)
    if "Pusher" in spec.stages and "Evaluator" not in spec.stages:
        problems.append(Problem("stages", "the Pusher needs the Evaluator's blessing"))
    problems += _check_source(spec, access if access is not None else spec.data_access)
    return problems


def compiled(spec: PipelineSpec) -> dict:
    """The spec with defaults resolved, as every later stage will read it."""
    data = spec.model_dump(mode="json", exclude={"data_access"})
    # training params over the model config (the Trainer's optimizer_settings)
    data["training"]["optimizer"] = spec.training.optimizer or spec.model.optimizer
    data["training"]["learning_rate"] = spec.training.learning_rate or spec.model.learning_rate
    return data


class Compile(Stage[PipelineSpec]):
    """Its parameters are the whole spec (what the source may be read from aside: the context brings that)."""

    name = "Compile"
    output = CompiledSpec
    Params = PipelineSpec

    def params(self, spec: PipelineSpec) -> PipelineSpec:
        return spec.model_copy(update={"data_access": None})

    def run(self, ctx: StageContext, params: PipelineSpec) -> StageResult:
        problems = check_spec(params, ctx.data_access)
        if problems:
            raise ConfigError(problems)
        data = compiled(params)
        spec_fingerprint = fingerprint(data)
        # The file is logged to MLflow and shown to users: no database password in it.
        (ctx.output / CompiledSpec.FILES["spec"]).write_text(json.dumps(redact(data), indent=2, sort_keys=True))
        (ctx.output / CompiledSpec.FILES["fingerprint"]).write_text(spec_fingerprint)
        ctx.log.info("spec %s compiled (fingerprint %s)", params.name, spec_fingerprint[:12])
        return StageResult(
            f"spec valid: {params.model.model_type} model, {len(params.stages)} stages",
            {"fingerprint": spec_fingerprint, "model_type": str(params.model.model_type)},
        )
