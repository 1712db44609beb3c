"""What the training and experiment endpoints take and answer, as OpenAPI documents them.

A run's configuration sections are the execution plane's own pydantic models (``SplitConfig``,
``TrainingParams``, ``EvaluatorConfig`` from the pipeline spec; ``GpuConfig``, ``ScheduleConfig`` from
the services), so the schema shows every field with its default and allowed values, and a bad value is
refused at the edge naming its field (``training_params.epochs``). A section is stored as it was sent
(what was left out takes the pipeline's default when the spec is built), and answered the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from ninja import Schema
from pydantic import Field, PlainSerializer, ValidationError, WrapValidator

from ml_pipeline.config.features import FeatureConfig
from ml_pipeline.config.model import ModelConfig, ModelType
from ml_pipeline.metrics import SPLITS
from ml_pipeline.spec import STAGES, EvaluatorConfig, SplitConfig, StageName, StageStatus, TrainingParams
from ml_platform.training import rules
from ml_platform.training.models import RunKind, Runner, RunStatus
from ml_platform.training.services import GpuConfig, ScheduleConfig

RunStatusName = Literal[tuple(RunStatus.values)]  # type: ignore[valid-type]
RunKindName = Literal[tuple(RunKind.values)]  # type: ignore[valid-type]
RunnerName = Literal[tuple(Runner.values)]  # type: ignore[valid-type]
RemoteRunnerName = Literal["local", "kubeflow", "vertex"]  # ml_platform.runners.config.RUNNERS
ModelTypeName = Literal[tuple(t.value for t in ModelType)]  # type: ignore[valid-type]
StageStatusName = Literal[tuple(s.value for s in StageStatus)]  # type: ignore[valid-type]
SplitName = Literal[SPLITS]  # type: ignore[valid-type]
WORKER_LOG = "worker"


def _one_of(listed: str) -> WrapValidator:
    """A stage name, refused in the API's own words (the stages listed in pipeline order)."""

    def check(value, handler):
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(f"unknown stage '{value}'; one of {listed}") from None

    return WrapValidator(check)


FromStage = Annotated[StageName, _one_of(", ".join(STAGES))]
LOG_NAMES = (*STAGES, WORKER_LOG)
LogName = Annotated[Literal[LOG_NAMES], _one_of(f"{', '.join(STAGES)} or {WORKER_LOG}")]  # type: ignore[valid-type]

T = TypeVar("T")


def _as_sent(section):
    return section.model_dump(mode="json", exclude_unset=True)


# A section answered as it is stored: the fields that were sent, not the defaults they were checked with.
AsSent = Annotated[T, PlainSerializer(_as_sent)]


class RunInput(Schema):
    def fields_sent(self) -> dict:
        """The fields the client sent, sections as sent, ready to store as JSON."""
        return self.model_dump(mode="json", exclude_unset=True)


# --------------------------------------------------------------------------- inputs


class TrainingRunIn(RunInput):
    """From the catalog (the three ids) or from an experiment (``experiment_id``, promoted as it was tested)."""

    name: str = Field(min_length=1, max_length=200, description="The registered model's name")
    description: str = ""
    experiment_id: int | None = None
    dataset_id: int | None = None
    feature_config_id: int | None = None
    model_config_id: int | None = None
    # Checked field by field here; what needs the source or the other sections (the split's columns, a
    # threshold on a metric the model computes) by the services, which name the same fields.
    split_config: SplitConfig = Field(
        SplitConfig(), description="With experiment_id: merged over the experiment's (sample_percent defaults to 100)"
    )
    training_params: TrainingParams = Field(
        TrainingParams(), description="With experiment_id: merged over the experiment's"
    )
    gpu_config: GpuConfig = GpuConfig()
    evaluator_config: EvaluatorConfig = EvaluatorConfig()
    schedule_config: ScheduleConfig = ScheduleConfig()
    runner: RemoteRunnerName | None = Field(None, description="Where it runs; default: the project's runner")


class RerunIn(RunInput):
    """Everything optional: an empty body reruns the same configuration from scratch (cached stages reused).

    A section given replaces the original's whole.
    """

    from_stage: FromStage | None = Field(None, description="Recompute from this stage on")
    description: str | None = None
    dataset_id: int | None = None
    feature_config_id: int | None = None
    model_config_id: int | None = None
    split_config: SplitConfig | None = None
    training_params: TrainingParams | None = None
    gpu_config: GpuConfig | None = None
    evaluator_config: EvaluatorConfig | None = None


class RunConfigPatch(RunInput):
    """Each given section replaces the stored one whole; omitted sections stay as they are."""

    training_params: TrainingParams | None = None
    gpu_config: GpuConfig | None = None
    evaluator_config: EvaluatorConfig | None = None
    schedule_config: ScheduleConfig | None = None


# --------------------------------------------------------------------------- the list


class ScheduleOrigin(Schema):
    """The schedule that started a run, and the occurrence it fired for."""

    id: int
    name: str
    scheduled_for: datetime = Field(description="The occurrence (UTC); for a run triggered by hand, that moment")
    trigger: Literal["occurrence", "manual"]


class DataWindow(Schema):
    """A run's relative data window: the last N days up to a scheduled run's occurrence, or the newest row."""

    last_days: int
    ends_at: datetime | None = Field(description="Where it ends (UTC); null: at the newest row")


class RunListItem(Schema):
    id: int
    kind: RunKindName
    display_name: str
    run_number: int
    name: str
    model_type: ModelTypeName
    status: RunStatusName
    current_stage: str
    current_epoch: int | None
    total_epochs: int | None
    stages: dict[str, StageStatusName] = Field(
        description="stage -> status, in pipeline order (the card's progress bar)"
    )
    recall_at_100: float | None
    rmse: float | None
    blessed: bool | None
    gpu_type: str | None
    gpu_count: int
    dataset_name: str | None
    error_message: str
    error_stage: str
    created_at: datetime
    duration_seconds: float | None
    cost_usd: float
    dataset_id: int | None
    feature_config_id: int | None
    feature_config_name: str | None
    model_config_id: int | None
    model_config_name: str | None
    registered_model_id: int | None
    registry_version: int | None
    deployed: bool = Field(description="This run's registry version is the one its model serves")
    schedule: ScheduleOrigin | None = Field(None, description="The schedule that started it; null: started by hand")
    metric_split: Literal["eval", "test"] = Field(
        description="Where recall_at_100 and rmse were measured: test (the Evaluator) or eval (the Trainer)"
    )
    actions: list[Literal[rules.ACTIONS]] = Field(  # type: ignore[valid-type]
        description="What the run accepts now (cancel, rerun, edit, push, deploy, promote, delete)"
    )


class RunPage(Schema):
    count: int
    page: int
    page_size: int
    results: list[RunListItem]


# --------------------------------------------------------------------------- one run


class ComputeAttemptOut(Schema):
    shape: dict = Field(description="The worker pool tried: machine_spec (machine type, accelerator type and count)")
    region: str
    outcome: Literal["succeeded", "unavailable", "failed"]
    error: str = ""
    job: str = ""


class RemoteJobOut(Schema):
    """The job a run became on a remote runner (Kubeflow Pipelines, Vertex AI Pipelines)."""

    backend: Literal["kubeflow", "vertex"]
    state: str = Field(description="queued, pending, running, cancelling, succeeded, failed or cancelled")
    service_state: str = Field(description="The state as the service names it (PIPELINE_STATE_RUNNING, ...)")
    resource_name: str
    console_url: str
    error: str
    submitted_at: datetime | None
    checked_at: datetime | None
    trainer_attempts: list[ComputeAttemptOut] = Field(
        description="Each GPU shape the Trainer tried, in the fallback order, and why it was passed over"
    )


class StageOut(Schema):
    name: StageName
    status: StageStatusName = Field(
        description="interrupted: the run failed, or lost its process and is resumed; cancelled: the run was"
    )
    started_at: str | None = None
    ended_at: str | None = None
    summary: str | None = None


class ArtifactOut(Schema):
    stage: StageName
    type: str
    uri: str
    producer: str
    run: str | None = None
    fingerprint: str | None = None
    inputs: dict[str, str] = {}
    summary: str = ""


class CatalogRef(Schema):
    id: int | None
    name: str | None


class RunErrorOut(Schema):
    message: str
    stage: str
    traceback: str


class RunRef(Schema):
    id: int
    kind: RunKindName
    run_number: int
    name: str
    display_name: str


class RegisteredModelRef(Schema):
    id: int
    name: str
    model_type: ModelTypeName
    is_registered: bool
    latest_version: int | None
    deployed_version: int | None


class DiffEntry(Schema):
    field: str
    before: Any = None
    after: Any = None


class RunDetail(Schema):
    id: int
    project_id: int
    kind: RunKindName
    run_number: int
    name: str
    display_name: str
    description: str
    model_type: ModelTypeName
    status: RunStatusName
    is_terminal: bool
    current_stage: str
    current_epoch: int | None
    total_epochs: int | None
    cancel_requested: bool
    attempts: int
    runner: RunnerName = Field(description="local (the worker) or remote (a runner reporting through webhooks)")
    last_event_at: datetime | None = Field(description="A remote run's latest event: its sign of life")
    remote_job: RemoteJobOut | None = Field(None, description="Its job on Kubeflow or Vertex AI; null: local")
    stages: list[StageOut]
    dataset: CatalogRef
    feature_config: CatalogRef
    model_config_ref: CatalogRef = Field(alias="model_config")
    dataset_snapshot: dict = Field(
        description="The dataset as the run froze it (source, mapping, filters); passwords masked"
    )
    feature_config_snapshot: AsSent[FeatureConfig]
    model_config_snapshot: AsSent[ModelConfig]
    split_config: AsSent[SplitConfig]
    training_params: AsSent[TrainingParams]
    gpu_config: AsSent[GpuConfig]
    evaluator_config: AsSent[EvaluatorConfig]
    schedule_config: AsSent[ScheduleConfig]
    final_metrics: dict = Field(description="The Evaluator's metrics (test); eval_<name>: the Trainer's (eval)")
    metric_splits: dict[str, SplitName] = Field(description="final metric -> the split it was measured on")
    blessed: bool | None
    blessing_reasons: list
    advice: str | None = Field(description="An experiment's verdict as advice ('would not be blessed: ...')")
    artifacts: list[ArtifactOut]
    resources: dict
    duration_seconds: float | None
    cost_usd: float
    error: RunErrorOut | None
    registered_model: RegisteredModelRef | None
    registered_model_name: str
    rerun_of: RunRef | None
    source_experiment: RunRef | None
    schedule: ScheduleOrigin | None = Field(None, description="The schedule that started it; null: started by hand")
    data_window: DataWindow | None = Field(None, description="Its dataset's relative window; null: none")
    from_stage: Literal[("", *STAGES)] = Field(  # type: ignore[valid-type]
        description="The stage a rerun recomputed from; empty: none"
    )
    config_diff: list[DiffEntry]
    mlflow_run_id: str
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    model_config = {"populate_by_name": True}


class RunConfigOut(Schema):
    id: int
    name: str
    status: RunStatusName
    editable: bool
    dataset_id: int | None
    feature_config_id: int | None
    model_config_id: int | None
    training_params: AsSent[TrainingParams]
    gpu_config: AsSent[GpuConfig]
    evaluator_config: AsSent[EvaluatorConfig]
    schedule_config: AsSent[ScheduleConfig]
    updated_fields: list[str] = []


# --------------------------------------------------------------------------- progress and outputs


class EpochOut(Schema):
    epoch: int
    loss: float | None
    val_loss: float | None
    recall_at_5: float | None
    recall_at_10: float | None
    recall_at_50: float | None
    recall_at_100: float | None
    rmse: float | None
    mae: float | None
    metrics: dict[str, Any] = Field(description="Every scalar the Trainer reported for the epoch")
    resources: dict[str, Any] = Field(description="CPU, memory and GPU use during the epoch")
    recorded_at: datetime
    histograms: dict[str, Any] | None = Field(None, description="Weight histograms: only with ?histograms=true")


class MetricsOut(Schema):
    run_id: int
    status: RunStatusName
    current_epoch: int | None
    total_epochs: int | None
    metric_splits: dict[str, SplitName] = Field(description="epoch metric -> its split: loss train, the rest eval")
    epochs: list[EpochOut]


class LogOut(Schema):
    stage: str = Field(description="A stage's name, or 'worker'")
    status: str = Field(description="The stage's status (the run's, for the worker's log)")
    available: bool
    text: str = Field(description="The last lines")
    truncated: bool = Field(description="Earlier lines were left out")
    size_bytes: int
    cached_from: str | None = Field(description="For a stage reused from the cache: the run that produced it")


class LogsOut(Schema):
    run_id: int
    status: RunStatusName
    tail: int
    stages: list[LogOut]
    worker: LogOut | None = Field(None, description="Left out when one stage's log is asked for")


class StatisticsOverview(Schema):
    """The summary cards (of the train split, or the first split there is)."""

    split: str | None
    examples_by_split: dict[str, int | None]
    total_examples: int
    num_features: int
    numeric_features: int
    categorical_features: int
    timestamp_features: int
    avg_missing_pct: float | None


class StatisticsOut(Schema):
    run_id: int
    overview: StatisticsOverview
    summary: dict[str, Any] = Field(
        description="StatisticsGen's summary.json: per split, every column's counts, "
        "missing share, moments or top values"
    )
    report_url: str = Field(description="The standalone statistics report page")


class SchemaFeatureOut(Schema):
    name: str
    type: str = Field(description="TFDV's feature type: BYTES, INT, FLOAT, ...")
    presence_min_fraction: float | None
    required: bool
    domain_values: int | None = Field(description="How many values a string domain lists")


class AnomalyOut(Schema):
    feature: str
    kind: str
    severity: str
    description: str


class SchemaOut(Schema):
    run_id: int
    features: list[SchemaFeatureOut]
    tfdv_schema: dict[str, Any] = Field(alias="schema", description="The TFDV Schema proto as JSON")
    anomalies: list[AnomalyOut] = Field(description="What SchemaGen found in the eval split, errors first")


class ComparedRun(Schema):
    id: int
    display_name: str
    kind: RunKindName
    status: RunStatusName
    model_type: ModelTypeName
    dataset_name: str | None
    blessed: bool | None
    duration_seconds: float | None
    epochs_run: int | None
    created_at: datetime


class ConfigRow(Schema):
    field: str = Field(description="A config leaf's path, e.g. training_params.epochs")
    values: list[Any] = Field(description="One per run, in the order asked")
    differs: bool


class MetricRow(Schema):
    metric: str
    values: list[float | None]
    lower_is_better: bool
    best_index: int | None = Field(description="The best run's position; null with fewer than two values")


class Curve(Schema):
    run_id: int
    label: str
    points: list[tuple[int, float]] = Field(description="[epoch, value] pairs")


class ComparisonOut(Schema):
    runs: list[ComparedRun]
    config: list[ConfigRow]
    metrics: list[MetricRow]
    curves: dict[str, list[Curve]] = Field(
        description="metric -> one line per run (metrics no run reported are left out)"
    )


class SamplePercents(Schema):
    run: float
    experiment: float


class MetricDelta(Schema):
    metric: str
    run: float
    experiment: float
    delta: float
    relative_delta: float | None
    lower_is_better: bool
    improved: bool | None = Field(description="null when the values are equal")


class VersusExperimentOut(Schema):
    run: ComparedRun
    experiment: ComparedRun
    sample_percent: SamplePercents
    metrics: list[MetricDelta]
