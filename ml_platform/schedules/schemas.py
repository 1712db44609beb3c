"""What the schedule endpoints take and answer, as OpenAPI documents them."""

from __future__ import annotations

from datetime import datetime, time
from typing import Literal

from ninja import Schema
from pydantic import Field

from ml_platform.core.fields import Id
from ml_platform.schedules import timing
from ml_platform.schedules.models import (
    DeliveryStatus,
    FiringStatus,
    FiringTrigger,
    NotificationTarget,
    NotifyEvent,
    OnBlessed,
    OverlapPolicy,
    ScheduleStatus,
)
from ml_platform.schedules.services import ScheduleFields
from ml_platform.training.schemas import DataWindow, RunStatusName

ScheduleTypeName = Literal[timing.TYPES]  # type: ignore[valid-type]
OnBlessedName = Literal[tuple(OnBlessed.values)]  # type: ignore[valid-type]
OverlapName = Literal[tuple(OverlapPolicy.values)]  # type: ignore[valid-type]
StatusName = Literal[tuple(ScheduleStatus.values)]  # type: ignore[valid-type]
FiringStatusName = Literal[tuple(FiringStatus.values)]  # type: ignore[valid-type]
TriggerName = Literal[tuple(FiringTrigger.values)]  # type: ignore[valid-type]


class TimingIn(Schema):
    """When it fires. Which fields a type needs: once ``scheduled_datetime``; hourly ``schedule_time``
    (its minute: 00, 15, 30 or 45); daily ``schedule_time``; weekly that and ``schedule_day_of_week``;
    monthly that and ``schedule_day_of_month`` (29-31 are skipped in months without that day)."""

    schedule_type: ScheduleTypeName
    schedule_time: time | None = Field(None, description="HH:MM in the schedule's zone")
    schedule_day_of_week: int | None = Field(None, ge=0, le=6, description="0 = Monday ... 6 = Sunday")
    schedule_day_of_month: int | None = Field(None, ge=1, le=31)
    scheduled_datetime: datetime | None = Field(
        None, description="once: a wall-clock date and time in the zone (or an instant with its offset)"
    )
    schedule_timezone: str = Field("UTC", max_length=64, description="An IANA zone, e.g. Europe/Warsaw")


class ScheduleIn(TimingIn):
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    on_blessed: OnBlessedName = Field("nothing", description="What to do with a blessed run")
    overlap_policy: OverlapName = Field("skip", description="When an occurrence comes while the last run still runs")
    max_consecutive_failures: int = Field(3, ge=0, le=100, description="Paused after this many; 0: never")

    def fields(self) -> ScheduleFields:
        return ScheduleFields(**self.model_dump(exclude={"source_training_run_id", "registered_model_id"}))


class ScheduleCreateIn(ScheduleIn):
    """Give one: a training run to copy (its model gets the schedule) or a registered model (its newest
    completed version is copied)."""

    source_training_run_id: Id | None = None
    registered_model_id: Id | None = None


class FromRunIn(ScheduleIn):
    source_training_run_id: Id


class Statistics(Schema):
    total_runs: int
    successful_runs: int
    failed_runs: int
    skipped_runs: int
    consecutive_failures: int
    success_rate: float | None = Field(description="Percent of ended runs that trained, None before any")


class Configuration(Schema):
    dataset_id: int
    dataset_name: str
    feature_config_id: int
    feature_config_name: str
    model_config_id: int
    model_config_name: str
    source_run_id: int | None
    base_experiment_id: int | None
    split_config: dict
    training_params: dict
    gpu_config: dict
    evaluator_config: dict


class ScheduleOut(Schema):
    id: int
    project_id: int
    registered_model_id: int
    registered_model_name: str
    name: str
    description: str
    schedule_type: ScheduleTypeName
    scheduled_datetime: datetime | None
    schedule_time: str | None
    schedule_day_of_week: int | None
    schedule_day_of_month: int | None
    schedule_timezone: str
    summary: str = Field(description="In words, e.g. 'Weekly on Monday at 09:00 (Europe/Warsaw)'")
    cron: str = Field(description="The cron expression, read in schedule_timezone")
    notes: list[str]
    on_blessed: OnBlessedName
    overlap_policy: OverlapName
    max_consecutive_failures: int
    status: StatusName
    status_reason: str
    next_run_at: datetime | None = Field(description="UTC")
    next_run_local: datetime | None = Field(description="The same instant in the schedule's zone")
    last_run_at: datetime | None
    statistics: Statistics
    configuration: Configuration
    created_at: datetime
    updated_at: datetime


class FiringOut(Schema):
    id: int
    trigger: TriggerName
    scheduled_for: datetime
    fired_by: str
    status: FiringStatusName
    reason: str
    blessed_action: str
    action_state: Literal["", "pending", "acting", "deploying", "done"] = Field(
        description="A blessed run's push (and deploy), done by the worker off its tick: pending, acting, "
        "deploying (the background deploy asked for is being carried out), done"
    )
    run_id: int | None
    run_label: str | None
    run_status: RunStatusName | None
    version: int | None
    blessed: bool | None
    value: float | None = Field(description="The run's main metric")
    delta: float | None = Field(description="Its change on the previous run's")
    better: bool | None = Field(description="Whether that change is an improvement (the metric's direction)")
    duration_seconds: float | None
    cost_usd: float | None
    data_rows: int | None = Field(description="The rows its dataset held for the occurrence (its window's)")
    data_window: DataWindow | None = Field(description="Its run's relative window: last N days up to when")


class HistoryOut(Schema):
    metric: str
    metric_label: str
    lower_is_better: bool
    threshold: float | None = Field(description="The evaluator's threshold on the metric, if it has one")
    deployed_version: int | None
    firings: list[FiringOut] = Field(description="Oldest first")


class FireTimeOut(Schema):
    at_utc: datetime
    at_local: datetime
    note: str


class NextRunsOut(Schema):
    summary: str
    timezone: str
    times: list[FireTimeOut]
    notes: list[str] = Field(description="e.g. which months a monthly schedule on the 31st skips")


class SourcePreviewOut(Schema):
    source_run_id: int
    source_run_name: str
    source_run_number: int
    registered_model_id: int | None
    has_schedule: bool
    schedule_id: int | None
    dataset_id: int | None
    dataset_name: str | None
    feature_config_id: int | None
    feature_config_name: str | None
    model_config_id: int | None
    model_config_name: str | None
    model_type: str
    training_params: dict
    gpu_config: dict


NotifyEventName = Literal[tuple(NotifyEvent.values)]  # type: ignore[valid-type]
TargetKindName = Literal[tuple(k for k, _ in NotificationTarget.KINDS)]  # type: ignore[valid-type]
DeliveryStatusName = Literal[tuple(DeliveryStatus.values)]  # type: ignore[valid-type]


class TargetIn(Schema):
    kind: TargetKindName
    address: str = Field(min_length=1, max_length=500, description="An e-mail address, or an http(s) URL")
    events: list[NotifyEventName] = Field([], description="Which events; empty: all of them")


class TargetOut(Schema):
    id: int
    kind: TargetKindName
    address: str
    events: list[NotifyEventName]
    created_at: datetime


class TargetCreatedOut(TargetOut):
    secret: str | None = Field(
        description="A webhook's signing key (X-Signature: sha256=HMAC-SHA256 of the body), shown only now"
    )


class DeliveryOut(Schema):
    id: int
    target_id: int
    event: NotifyEventName
    subject: str
    payload: dict
    status: DeliveryStatusName
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    response_status: int | None
    response_excerpt: str
    created_at: datetime
    delivered_at: datetime | None
