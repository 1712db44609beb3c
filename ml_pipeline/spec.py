"""The pipeline spec: one JSON document that fully determines a pipeline run.

It is a frozen snapshot of everything a run reads — the dataset (source,
mapping, filters), sampling and split, the feature and model configs, the
training parameters, the schema and evaluator policies, and where a blessed
model is pushed — so a run can be repeated, cached, resumed, compiled for
Vertex AI, or compared with another run by diffing two documents.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from ml_pipeline.config.dataset import DatasetConfig, StrictModel
from ml_pipeline.config.features import FeatureConfig
from ml_pipeline.config.model import ModelConfig
from ml_pipeline.data.access import DataAccess
from ml_pipeline.metrics import lower_is_better

STAGES = (
    "Compile",
    "ExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "Transform",
    "Trainer",
    "Evaluator",
    "Pusher",
)
StageName = Literal[STAGES]  # type: ignore[valid-type]


class StageStatus(StrEnum):
    """Where one stage of one run stands: the one vocabulary of the runner, the reporters, the webhooks and
    the platform's stage table.

    The runner writes ``pending``, ``running``, ``completed``, ``cached`` (reused from an earlier run),
    ``skipped`` and ``failed``; the platform adds ``interrupted`` (its run was stopped and will resume) and
    ``cancelled``.
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    CACHED = "cached"
    SKIPPED = "skipped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"

    @property
    def produced_output(self) -> bool:
        """The stage left a complete artifact (its own or an earlier run's)."""
        return self in (StageStatus.COMPLETED, StageStatus.CACHED)


class SplitConfig(StrictModel):
    """Sampling and the train/eval/test split.

    * ``random``: a deterministic hash of ``hash_key`` (default: the row's
      buyer, product and timestamp) assigns each row by ``ratios``;
    * ``time_holdout``: rows in the last ``holdout_days`` days (up to ``dataset.as_of`` if set) are eval;
    * ``strict_temporal``: train < ``train_end`` <= eval < ``eval_end`` <= test.
    """

    strategy: Literal["random", "time_holdout", "strict_temporal"] = "random"
    sample_percent: float = Field(default=100.0, gt=0.0, le=100.0)
    seed: int = 42
    train_ratio: float = Field(default=0.8, gt=0.0, lt=1.0)
    eval_ratio: float = Field(default=0.1, gt=0.0, lt=1.0)
    test_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)
    hash_key: Literal["row", "buyer"] = "row"
    holdout_days: int | None = Field(default=None, ge=1, le=3650)
    train_end: datetime | None = None
    eval_end: datetime | None = None

    @model_validator(mode="after")
    def _strategy_fields(self) -> SplitConfig:
        if self.strategy == "random":
            total = self.train_ratio + self.eval_ratio + self.test_ratio
            if abs(total - 1.0) > 1e-6:
                raise ValueError(f"test_ratio: train, eval and test ratios must add up to 1 (they add up to {total:g})")
        elif self.strategy == "time_holdout":
            if self.holdout_days is None:
                raise ValueError("holdout_days: required for the time_holdout strategy")
        else:
            if self.train_end is None or self.eval_end is None:
                raise ValueError("train_end: strict_temporal needs train_end and eval_end")
            if self.train_end >= self.eval_end:
                raise ValueError("eval_end: must be after train_end")
        return self


class EarlyStopping(StrictModel):
    enabled: bool = True
    patience: int = Field(default=3, ge=1, le=1000)
    min_delta: float = Field(default=0.0, ge=0.0)
    monitor: str | None = Field(
        default=None,
        pattern=r"^(val_loss|val_retrieval_loss|val_rating_loss|recall_at_\d+|rmse|mae)$",
        description="Metric watched on the eval split; default: recall_at_<largest K>, or rmse for ranking",
    )


class HardwareConfig(StrictModel):
    """GPUs the Trainer should use; 0 means CPU."""

    gpu_count: int = Field(default=0, ge=0, le=16)
    allow_cpu_fallback: bool = False


class TrainingParams(StrictModel):
    epochs: int = Field(default=10, ge=1, le=10_000)
    batch_size: int = Field(default=1024, ge=8, le=1_048_576)
    # Training params take precedence over the model config's optimizer and learning rate, so one model
    # config can be trained with several settings.
    optimizer: Literal["adagrad", "adam", "sgd"] | None = Field(
        default=None, description="Overrides the model config's"
    )
    learning_rate: float | None = Field(default=None, gt=0.0, le=10.0, description="Overrides the model config's")
    early_stopping: EarlyStopping = EarlyStopping()
    hardware: HardwareConfig = HardwareConfig()
    seed: int = 42
    eval_max_buyers: int = Field(default=5000, ge=10, description="Buyers sampled for per-epoch Recall@K")


class SchemaPolicy(StrictModel):
    """What SchemaGen treats as an anomaly, and whether anomalies fail the run."""

    fail_on_anomalies: bool = False
    max_domain_size: int = Field(default=1000, ge=1, description="String features with fewer values get a domain")
    unseen_category_share: float = Field(default=0.05, ge=0.0, le=1.0)
    drift_l_infinity: float = Field(default=0.3, gt=0.0, le=1.0)


class Threshold(StrictModel):
    metric: str = Field(pattern=r"^(recall_at_\d+|ndcg_at_\d+|mrr|coverage|rmse|mae)$")
    op: Literal[">=", "<="] | None = None  # default: >= for recall/ndcg/mrr/coverage, <= for errors

    value: float

    def direction(self) -> str:
        if self.op:
            return self.op
        return "<=" if lower_is_better(self.metric) else ">="


class EvaluatorConfig(StrictModel):
    """Blessing policy: thresholds, comparison with a baseline model, and the first-run policy."""

    enabled: bool = True
    thresholds: list[Threshold] = []
    baseline_model_uri: str | None = None
    baseline_label: str | None = None
    tolerance: float = Field(default=0.01, ge=0.0, description="Allowed regression vs the baseline (absolute)")
    compare_metric: str | None = None  # default: recall_at_<largest K>, or rmse for ranking
    first_run_policy: Literal["bless_if_thresholds_pass", "never_bless"] = "bless_if_thresholds_pass"
    naive_baseline_margin: float | None = Field(
        default=0.0,
        ge=0.0,
        description="The compare metric must beat popularity (retrieval) or the mean (RMSE/MAE) by more than "
        "this, on every run; None turns the rule off",
    )
    max_buyers: int | None = Field(
        default=50_000,
        ge=10,
        description="Held-out buyers scored against the full catalog; past it a seeded uniform sample of this "
        "many (the same buyers for the model and every baseline); None scores them all",
    )
    sample_seed: int = Field(default=0, description="Seed of the held-out buyer sample (max_buyers)")


class PushConfig(StrictModel):
    destination: str | None = Field(default=None, description="Folder or fsspec URL; default: under the run")


class PipelineSpec(StrictModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    dataset: DatasetConfig
    split: SplitConfig = SplitConfig()
    features: FeatureConfig
    model: ModelConfig
    training: TrainingParams = TrainingParams()
    schema_policy: SchemaPolicy = SchemaPolicy()
    evaluator: EvaluatorConfig = EvaluatorConfig()
    push: PushConfig = PushConfig()
    stages: list[StageName] = list(STAGES)
    # What the dataset source may read. The platform sets it for every run it
    # checks or executes; None, as in the CLI, allows every path. Never dumped
    # (so never stored with a run or written to its files) and in no
    # fingerprint: it changes who may read, not what is computed.
    data_access: DataAccess | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _time_splits_need_timestamps(self) -> PipelineSpec:
        if self.split.strategy != "random" and not self.dataset.mapping.timestamp:
            raise ValueError(f"split.strategy: '{self.split.strategy}' needs dataset.mapping.timestamp")
        return self

    @model_validator(mode="after")
    def _as_of_ends_something(self) -> PipelineSpec:
        """``dataset.as_of`` only where it changes the examples, so it is in ExampleGen's key only then."""
        if self.dataset.as_of is not None and not (
            self.dataset.filters.last_days or self.split.strategy == "time_holdout"
        ):
            raise ValueError(
                "dataset.as_of: only a relative window (filters.last_days) or a time_holdout split has an end to set"
            )
        return self

    @model_validator(mode="after")
    def _monitor_is_computed(self) -> PipelineSpec:
        monitor = self.training.early_stopping.monitor
        recall_k = int(monitor.rsplit("_", 1)[1]) if monitor and monitor.startswith("recall_at_") else None
        if recall_k is not None and (not self.model.has_retrieval or recall_k not in self.model.retrieval_k):
            raise ValueError(f"training.early_stopping.monitor: {monitor} is not computed for this model")
        if monitor in ("rmse", "mae", "val_rating_loss") and not self.model.has_rating_head:
            raise ValueError(f"training.early_stopping.monitor: {monitor} needs a ranking or multitask model")
        if monitor == "val_retrieval_loss" and not self.model.has_retrieval:
            raise ValueError(f"training.early_stopping.monitor: {monitor} needs a retrieval or multitask model")
        return self
