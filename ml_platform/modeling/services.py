"""Feature and model configs: validation in context, tensor breakdown, parameter counts."""

from __future__ import annotations

from ml_pipeline.config import features as feature_schema
from ml_pipeline.config import model as model_schema
from ml_pipeline.config.dataset import ColumnMapping
from ml_pipeline.errors import ConfigError, Problem, validate_model
from ml_platform.core.errors import Conflict
from ml_platform.datasets.models import Dataset
from ml_platform.modeling.models import FeatureConfig, ModelConfig


def _check_name_free(model, project, name: str, exclude_id: int | None = None) -> None:
    if model.objects.filter(project=project, name=name).exclude(pk=exclude_id).exists():
        label = model._meta.verbose_name
        raise Conflict("Name taken", [Problem("name", f"a {label} named '{name}' already exists in this project")])


def parse_feature_config(config: dict, dataset: Dataset) -> feature_schema.FeatureConfig:
    parsed = validate_model(feature_schema.FeatureConfig, config, prefix="config")
    available = ColumnMapping.model_validate(dataset.mapping).output_columns()
    try:
        parsed.check_columns(available)
    except ConfigError as error:
        raise ConfigError([Problem(f"config.{p.field}", p.message) for p in error.problems]) from None
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


def save_feature_config(project, user, fields: dict, instance: FeatureConfig | None = None) -> FeatureConfig:
    """Create (instance=None) or update a feature config from validated API fields."""
    instance = _named(instance or FeatureConfig(project=project, created_by=user), project, fields)
    if "dataset_id" in fields:
        instance.dataset = _dataset_in_project(project, fields["dataset_id"])
    config = fields.get("config", instance.config)
    instance.config = parse_feature_config(config, instance.dataset).model_dump(mode="json")
    instance.save()
    return instance


def breakdown(feature_config: FeatureConfig) -> dict:
    return feature_schema.tensor_breakdown(feature_schema.FeatureConfig.model_validate(feature_config.config))


def _feature_config_in_project(project, feature_config_id: int | None) -> FeatureConfig | None:
    if feature_config_id is None:
        return None
    found = FeatureConfig.objects.filter(project=project, pk=feature_config_id).first()
    if found is None:
        raise ConfigError(Problem("feature_config_id", f"no feature config {feature_config_id} in this project"))
    return found


def save_model_config(project, user, fields: dict, instance: ModelConfig | None = None) -> ModelConfig:
    instance = _named(instance or ModelConfig(project=project, created_by=user), project, fields)
    if "feature_config_id" in fields:
        instance.feature_config = _feature_config_in_project(project, fields["feature_config_id"])
    parsed = validate_model(model_schema.ModelConfig, fields.get("config", instance.config), prefix="config")
    if instance.feature_config is not None:
        parsed.check_against(feature_schema.FeatureConfig.model_validate(instance.feature_config.config))
    instance.config = parsed.model_dump(mode="json")
    instance.model_type = parsed.model_type
    instance.save()
    return instance


def parameter_counts(model_config: ModelConfig, feature_config: FeatureConfig | None = None) -> dict | None:
    """Counts for the model with the given (or its paired) feature config; None with neither."""
    feature_config = feature_config or model_config.feature_config
    if feature_config is None:
        return None
    return model_schema.parameter_counts(
        model_schema.ModelConfig.model_validate(model_config.config),
        feature_schema.FeatureConfig.model_validate(feature_config.config),
    )


def check_pairing(model_config: ModelConfig, feature_config: FeatureConfig) -> None:
    """The two configs can train together (same project, target present where needed)."""
    if model_config.project_id != feature_config.project_id:
        raise ConfigError(Problem("feature_config_id", "the feature config belongs to another project"))
    model_schema.ModelConfig.model_validate(model_config.config).check_against(
        feature_schema.FeatureConfig.model_validate(feature_config.config)
    )
