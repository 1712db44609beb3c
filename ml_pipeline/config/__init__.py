"""Config schemas shared by the control plane (API validation) and the pipeline."""

from ml_pipeline.config.dataset import ColumnMapping, DatasetConfig, Filters
from ml_pipeline.config.features import FeatureConfig, tensor_breakdown
from ml_pipeline.config.model import ModelConfig, ModelType, parameter_counts

__all__ = [
    "ColumnMapping",
    "DatasetConfig",
    "FeatureConfig",
    "Filters",
    "ModelConfig",
    "ModelType",
    "parameter_counts",
    "tensor_breakdown",
]
