"""Feature and model configs: validation in context, tensor breakdown, parameter counts."""

from __future__ import annotations

import copy

from ml_pipeline.config import features as feature_schema
from ml_pipeline.config import model as model_schema
from ml_pipeline.config.dataset import ColumnMapping
from ml_pipeline.errors import ConfigError, Problem, validate_model
from ml_platform.core import usage
from ml_platform.core.errors import Conflict
from ml_platform.datasets.models import Dataset
from ml_platform.modeling.models import FeatureConfig, ModelConfig


def _check_name_free(model, project, name: str, exclude_id: int | None = None) -> None:
    if model.objects.filter(project=project, name=name).exclude(pk=exclude_id).exists():
        label = model._meta.verbose_name
        raise Conflict("Name taken", [Problem("name", f"a {label} named '{name}' already exists in this project")])


VOCABULARY_KINDS = ("id", "categorical", "text")


def _roles(mapping: ColumnMapping) -> dict[str, str]:
    """Source column -> the role the mapping gave it (``user_id`` -> ``buyer_id``), where the names differ and
    the source name is not itself a column of the mapped rows."""
    output = mapping.output_columns()
    given = {"buyer_id": mapping.buyer_id, "product_id": mapping.product_id}
    given.update({role: getattr(mapping, role) for role in ("timestamp", "target") if getattr(mapping, role)})
    return {column: role for role, column in given.items() if column != role and column not in output}


def _with_default_dims(config: dict, distinct: dict[str, int]) -> dict:
    """Vocabulary features without an ``embedding_dim`` get one from their vocabulary size: the dataset's
    distinct values where its preview has them (at most ``max_vocab_size``), else ``max_vocab_size``."""
    default_max = feature_schema._VocabularyFeature.model_fields["max_vocab_size"].default
    for tower_name in ("buyer_tower", "product_tower"):
        tower = config.get(tower_name)
        for feature in (tower.get("features") or []) if isinstance(tower, dict) else []:
            if not isinstance(feature, dict) or feature.get("kind") not in VOCABULARY_KINDS:
                continue
            if feature.get("embedding_dim") is not None:
                continue
            limit = feature.get("max_vocab_size", default_max)
            if not isinstance(limit, int) or limit < 1:
                continue  # the schema names it
            size = distinct.get(feature.get("column")) if feature["kind"] != "text" else None
            feature["embedding_dim"] = feature_schema.default_embedding_dim(min(limit, size) if size else limit)
    return config


def _explained(problem: Problem, renamed: dict[str, tuple[str, str]]) -> Problem:
    """A problem on a column the user named by its source name says what the mapping made of it."""
    for path, (source, role) in renamed.items():
        feature = path.rsplit(".", 1)[0] if path.endswith(".column") else path
        if problem.field == path or problem.field.startswith(feature + "."):
            return Problem(f"config.{problem.field}", f"'{source}' is mapped as {role}: {problem.message}")
    return Problem(f"config.{problem.field}" if problem.field else "config", problem.message)


def parse_feature_config(config: dict, dataset: Dataset) -> feature_schema.FeatureConfig:
    """A feature config checked against its dataset, every problem at once.

    Columns may be named as in the source where the mapping gave them a role (``user_id`` mapped as
    ``buyer_id``): they are stored as the role. Vocabulary features without ``embedding_dim`` get one
    sized to the dataset's vocabulary.
    """
    mapping = ColumnMapping.model_validate(dataset.mapping)
    named, renamed = feature_schema.named_by_role(config, _roles(mapping))
    named = _with_default_dims(named, dataset_vocabularies(dataset))
    try:
        parsed = validate_model(feature_schema.FeatureConfig, named)
        parsed.check_columns(mapping.output_columns())
    except ConfigError as error:
        raise ConfigError([_explained(p, renamed) for p in error.problems]) from None
    return parsed


def _dataset_in_project(project, dataset_id: int) -> Dataset:
    dataset = Dataset.objects.filter(project=project, pk=dataset_id).first()
    if dataset is None:
        raise ConfigError(Problem("dataset_id", f"no dataset {dataset_id} in this project"))
    return dataset


def _named(instance: FeatureConfig | ModelConfig, project, fields: dict) -> FeatureConfig | ModelConfig:
    """Set a config's name (free in its project) and description from the fields given."""
    if "name" in fields:
        _check_name_free(type(instance), project, fields["name"], exclude_id=instance.pk)
        instance.name = fields["name"]
    if "description" in fields:
        instance.description = fields["description"]
    return instance


def draft_feature_config(project, user, fields: dict, instance: FeatureConfig | None = None) -> FeatureConfig:
    """The feature config :func:`save_feature_config` would store (a copy of ``instance`` with ``fields``),
    checked against its dataset, but not saved: what a page's live panel shows."""
    draft = copy.copy(instance) if instance is not None else FeatureConfig(project=project, created_by=user)
    draft = _named(draft, project, fields)
    if "dataset_id" in fields:
        draft.dataset = _dataset_in_project(project, fields["dataset_id"])
    config = fields.get("config", draft.config)
    draft.config = parse_feature_config(config, draft.dataset).model_dump(mode="json")
    return draft


def save_feature_config(project, user, fields: dict, instance: FeatureConfig | None = None) -> FeatureConfig:
    """Create (instance=None) or update a feature config from validated API fields."""
    saved = draft_feature_config(project, user, fields, instance)
    saved.save()
    return saved


def breakdown(feature_config: FeatureConfig) -> dict:
    return feature_schema.tensor_breakdown(feature_schema.FeatureConfig.model_validate(feature_config.config))


def _feature_config_in_project(project, feature_config_id: int | None) -> FeatureConfig | None:
    if feature_config_id is None:
        return None
    found = FeatureConfig.objects.filter(project=project, pk=feature_config_id).first()
    if found is None:
        raise ConfigError(Problem("feature_config_id", f"no feature config {feature_config_id} in this project"))
    return found


def draft_model_config(project, user, fields: dict, instance: ModelConfig | None = None) -> ModelConfig:
    """The model config :func:`save_model_config` would store, checked (and against its paired feature
    config), but not saved."""
    draft = copy.copy(instance) if instance is not None else ModelConfig(project=project, created_by=user)
    draft = _named(draft, project, fields)
    if "feature_config_id" in fields:
        draft.feature_config = _feature_config_in_project(project, fields["feature_config_id"])
    parsed = validate_model(model_schema.ModelConfig, fields.get("config", draft.config), prefix="config")
    if draft.feature_config is not None:
        parsed.check_against(feature_schema.FeatureConfig.model_validate(draft.feature_config.config))
    draft.config = parsed.model_dump(mode="json")
    draft.model_type = parsed.model_type
    return draft


def save_model_config(project, user, fields: dict, instance: ModelConfig | None = None) -> ModelConfig:
    saved = draft_model_config(project, user, fields, instance)
    saved.save()
    return saved


def delete_config(config: FeatureConfig | ModelConfig) -> None:
    """Refused (Conflict, with the reason) while a schedule or a training run uses it; a model config
    paired with a deleted feature config is left unpaired."""
    usage.refuse_while_used(
        usage.named("training schedule", config.training_schedules.order_by("name"))
        + usage.runs_using(config.training_runs.all())
    )
    config.delete()


def dataset_vocabularies(dataset: Dataset) -> dict[str, int]:
    """Distinct values per column of a dataset, from its stored preview ({} without one; a preview stored
    before it counted every column has the buyers and products)."""
    preview = dataset.preview or {}
    if "distinct" in preview:
        return preview["distinct"]
    return {"buyer_id": preview["buyers"], "product_id": preview["products"]} if "buyers" in preview else {}


def parameter_counts(
    model_config: ModelConfig, feature_config: FeatureConfig | None = None, at_max_vocab: bool = False
) -> dict | None:
    """Counts for the model with the given (or its paired) feature config; None with neither.

    Vocabularies are as large as the dataset's distinct values (capped by ``max_vocab_size``) where the
    dataset has been previewed, as the trained model's tables will be; ``at_max_vocab``: every vocabulary
    at its ``max_vocab_size``, the most the model could have.
    """
    feature_config = feature_config or model_config.feature_config
    if feature_config is None:
        return None
    features = feature_schema.FeatureConfig.model_validate(feature_config.config)
    if not at_max_vocab:
        features = features.with_vocabularies(dataset_vocabularies(feature_config.dataset))
    return model_schema.parameter_counts(model_schema.ModelConfig.model_validate(model_config.config), features)


def parameter_counts_at_max_vocab(
    model_config: ModelConfig, feature_config: FeatureConfig | None = None
) -> dict | None:
    """The counts at every ``max_vocab_size`` where they differ from :func:`parameter_counts` (else None)."""
    real = parameter_counts(model_config, feature_config)
    most = parameter_counts(model_config, feature_config, at_max_vocab=True)
    return most if most != real else None


def check_pairing(model_config: ModelConfig, feature_config: FeatureConfig) -> None:
    """The two configs can train together (same project, target present where needed)."""
    if model_config.project_id != feature_config.project_id:
        raise ConfigError(Problem("feature_config_id", "the feature config belongs to another project"))
    model_schema.ModelConfig.model_validate(model_config.config).check_against(
        feature_schema.FeatureConfig.model_validate(feature_config.config)
    )
