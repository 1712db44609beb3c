"""The events a run reports, as typed records: what a webhook body must be.

:class:`~ml_pipeline.reporting.EventReporter` turns reporter calls into
these dicts; the platform's webhook receiver parses a runner's body with
:func:`parse_event`, so a malformed one (not JSON, not an object, missing or
mistyped fields, unknown stages, nesting past the parser's limit, numbers too
big or not finite) is refused with the fields at fault, and only values of
these shapes are ever stored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, TypeAdapter, ValidationError

from ml_pipeline.errors import ConfigError, Problem, problem_from_error_item
from ml_pipeline.spec import StageName

MAX_EPOCHS = 10_000  # TrainingConfig.epochs' bound

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Text = Annotated[str, Field(max_length=10_000)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Epoch = Annotated[int, Field(ge=1, le=MAX_EPOCHS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Lenient(BaseModel):
    """Unknown keys are dropped, never stored (what a newer runner measures beyond these)."""

    model_config = ConfigDict(extra="ignore")


class _Event(_Strict):
    time: FiniteFloat | None = None


class StageInfo(_Strict):
    cached: bool = False
    fingerprint: Annotated[str, Field(max_length=200)] = ""


class StageStarted(_Event):
    event: Literal["stage_started"]
    stage: StageName
    info: StageInfo = StageInfo()


class StageCompleted(_Event):
    event: Literal["stage_completed"]
    stage: StageName
    summary: Text = ""
    properties: dict[str, Any] = {}  # the stage's figures; not stored from a webhook
    cached: bool = False


class StageSkipped(_Event):
    event: Literal["stage_skipped"]
    stage: StageName
    reason: Text = ""


class StageFailed(_Event):
    event: Literal["stage_failed"]
    stage: StageName
    message: Text = ""
    traceback: Annotated[str, Field(max_length=200_000)] = ""


class Histogram(_Strict):
    counts: Annotated[list[NonNegativeInt], Field(max_length=1_000)]
    edges: Annotated[list[FiniteFloat], Field(max_length=1_001)]


class Histograms(_Strict):
    weights: Annotated[dict[Name, Histogram], Field(max_length=100)] = {}
    gradients: Annotated[dict[Name, Histogram], Field(max_length=100)] = {}


class Gpu(_Lenient):
    index: Annotated[int, Field(ge=0, le=1_024)]
    name: Annotated[str, Field(max_length=200)] = ""
    memory_used_mb: FiniteFloat | None = None
    memory_total_mb: FiniteFloat | None = None
    utilization_pct: FiniteFloat | None = None


class Resources(BaseModel):
    """What the runner measured during the epoch; any other entry is a number."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, FiniteFloat | None]
    gpus: Annotated[list[Gpu], Field(max_length=64)] = []


class EpochMetrics(BaseModel):
    """Every scalar the Trainer reported, plus its histograms and the runner's resource use."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, FiniteFloat | None]
    histograms: Histograms | None = None
    resources: Resources | None = None


class EpochCompleted(_Event):
    event: Literal["epoch_completed"]
    epoch: Epoch
    total_epochs: Epoch
    metrics: EpochMetrics = EpochMetrics()


class RunSummary(_Strict):
    blessed: bool | None = None
    stage: StageName | None = None
    message: Text = ""


class RunFinished(_Event):
    event: Literal["run_finished"]
    status: Literal["completed", "failed"]  # how the run ended: StageStatus.COMPLETED or FAILED
    summary: RunSummary = RunSummary()


class ComputeAttempt(_Event):
    """One try at the compute a stage asked for (the Trainer's GPU shapes on Vertex AI, in fallback order)."""

    event: Literal["compute_attempt"]
    stage: StageName
    shape: dict[str, Any] = {}  # the worker pool tried: machine_spec (machine type, accelerator), replica_count
    region: Annotated[str, Field(max_length=100)] = ""
    outcome: Literal["succeeded", "unavailable", "failed"]
    error: Text = ""
    job: Annotated[str, Field(max_length=500)] = ""


RunEvent = Annotated[
    StageStarted | StageCompleted | StageSkipped | StageFailed | EpochCompleted | RunFinished | ComputeAttempt,
    Field(discriminator="event"),
]
EVENT_KINDS = (
    "stage_started",
    "stage_completed",
    "stage_skipped",
    "stage_failed",
    "epoch_completed",
    "run_finished",
    "compute_attempt",
)
_events = TypeAdapter(RunEvent)


def _problem(item: dict) -> Problem:
    loc = tuple(item["loc"])
    if loc and loc[0] in EVENT_KINDS:
        loc = loc[1:]  # pydantic puts the union's tag first; the body has no such level
    if item["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return Problem("event", f"must be one of {', '.join(EVENT_KINDS)}")
    if not loc:  # not JSON, or not an object: the body as a whole
        return Problem("body", item["msg"])
    return problem_from_error_item(loc, item["msg"])


def parse_event(
    body: bytes | str,
) -> StageStarted | StageCompleted | StageSkipped | StageFailed | EpochCompleted | RunFinished | ComputeAttempt:
    """The event in a JSON body; ConfigError naming each bad field otherwise."""
    try:
        return _events.validate_json(body)
    except ValidationError as error:
        raise ConfigError([_problem(item) for item in error.errors()]) from None
