"""How the run cards write their numbers: durations, metrics, costs, GPUs and the stage bar's labels."""

from __future__ import annotations

from django import template

from ml_pipeline.spec import STAGES
from ml_platform.registry.models import RegisteredModel
from ml_platform.training.models import RunStatus

register = template.Library()

# The stage bar's short names, in pipeline order.
STAGE_LABELS = dict(
    zip(STAGES, ("Compile", "Examples", "Stats", "Schema", "Transform", "Train", "Evaluator", "Pusher"))
)
STATUS_ICONS = {
    "pending": "○",
    "scheduled": "◷",
    "submitting": "↻",
    "running": "↻",
    "completed": "✓",
    "not_blessed": "!",
    "failed": "✗",
    "cancelled": "⊘",
}


@register.filter
def duration(seconds) -> str:
    """45s, 12m 5s, 3h 42m."""
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"


@register.filter
def metric(value) -> str:
    """A metric with four significant digits ("—" when there is none)."""
    if value is None or not isinstance(value, (int, float)):
        return "—"
    return f"{value:.4g}"


@register.filter
def usd(value) -> str:
    return f"${value:,.2f}" if value is not None else "—"


@register.filter
def gpu_chip(run: dict) -> str:
    count = run.get("gpu_count") or 0
    return f"{count}x {run.get('gpu_type') or 'GPU'}" if count else "CPU"


@register.filter
def stage_label(stage: str) -> str:
    return STAGE_LABELS.get(stage, stage)


@register.filter
def status_icon(status: str) -> str:
    return STATUS_ICONS.get(status, "•")


@register.filter
def has(actions, name: str) -> bool:
    return name in (actions or ())


@register.filter
def status_label(status: str) -> str:
    try:
        return RunStatus(status).label
    except ValueError:
        return status


@register.filter
def model_type_label(model_type: str) -> str:
    return dict(RegisteredModel.MODEL_TYPES).get(model_type, model_type)


@register.filter
def metric_label(name: str) -> str:
    """recall_at_100 -> R@100, rmse -> RMSE."""
    if name.startswith("recall_at_"):
        return f"R@{name.removeprefix('recall_at_')}"
    return name.upper() if name in ("rmse", "mae", "mrr") else name


@register.simple_tag
def view_tabs() -> dict:
    """The view modal's tabs (training/view.py), name -> label."""
    from ml_platform.training.view import TABS

    return TABS


@register.filter
def percent_change(relative: float | None) -> str:
    """A relative difference as an unsigned percentage (the arrow says which way): 0.0071 -> 0.7%."""
    return "—" if relative is None else f"{abs(relative) * 100:.1f}%"
