"""A schedule as the API and the pages show it: its timing in its zone, its statistics, and its run history
with whether each new version is better than the one before."""

from __future__ import annotations

from ml_pipeline.blessing import default_compare_metric, metric_label
from ml_pipeline.metrics import lower_is_better
from ml_platform.core import clock
from ml_platform.schedules import timing
from ml_platform.schedules.models import ScheduleFiring, TrainingSchedule
from ml_platform.training.presenters import data_window

HISTORY_SHOWN = 100


def schedule_out(schedule: TrainingSchedule) -> dict:
    tz = timing.zone(schedule.schedule_timezone)
    recurrence = schedule.recurrence()
    _, notes = timing.preview(recurrence, clock.now(), 5) if schedule.is_active else ([], [])
    return {
        "id": schedule.pk,
        "project_id": schedule.project_id,
        "registered_model_id": schedule.registered_model_id,
        "registered_model_name": schedule.registered_model.name,
        "name": schedule.name,
        "description": schedule.description,
        "schedule_type": schedule.schedule_type,
        "scheduled_datetime": schedule.scheduled_datetime,
        "schedule_time": f"{schedule.schedule_time:%H:%M}" if schedule.schedule_time else None,
        "schedule_day_of_week": schedule.schedule_day_of_week,
        "schedule_day_of_month": schedule.schedule_day_of_month,
        "schedule_timezone": schedule.schedule_timezone,
        "summary": recurrence.describe(),
        "cron": recurrence.cron(),
        "notes": notes,
        "on_blessed": schedule.on_blessed,
        "overlap_policy": schedule.overlap_policy,
        "max_consecutive_failures": schedule.max_consecutive_failures,
        "status": schedule.status,
        "status_reason": schedule.status_reason,
        "next_run_at": schedule.next_run_at,
        "next_run_local": schedule.next_run_at.astimezone(tz) if schedule.next_run_at else None,
        "last_run_at": schedule.last_run_at,
        "statistics": {
            "total_runs": schedule.total_runs,
            "successful_runs": schedule.successful_runs,
            "failed_runs": schedule.failed_runs,
            "skipped_runs": schedule.skipped_runs,
            "consecutive_failures": schedule.consecutive_failures,
            "success_rate": schedule.success_rate,
        },
        "configuration": {
            "dataset_id": schedule.dataset_id,
            "dataset_name": schedule.dataset.name,
            "feature_config_id": schedule.feature_config_id,
            "feature_config_name": schedule.feature_config.name,
            "model_config_id": schedule.model_config_id,
            "model_config_name": schedule.model_config.name,
            "source_run_id": schedule.source_run_id,
            "base_experiment_id": schedule.base_experiment_id,
            "split_config": schedule.split_config,
            "training_params": schedule.training_params,
            "gpu_config": schedule.gpu_config,
            "evaluator_config": schedule.evaluator_config,
        },
        "created_at": schedule.created_at,
        "updated_at": schedule.updated_at,
    }


SCHEDULE_RELATED = ("registered_model", "dataset", "feature_config", "model_config", "project")


def main_metric(schedule: TrainingSchedule) -> str:
    """The metric a version is judged by: the evaluator's compare metric, else its default for the model."""
    chosen = (schedule.evaluator_config or {}).get("compare_metric")
    if chosen:
        return chosen
    ks = (schedule.model_config.config or {}).get("retrieval_k") or [5, 10, 50, 100]
    return default_compare_metric(schedule.registered_model.model_type, ks)


def _threshold(schedule: TrainingSchedule, metric: str) -> float | None:
    for rule in (schedule.evaluator_config or {}).get("thresholds") or []:
        if rule.get("metric") == metric:
            return rule.get("value")
    return None


def history(schedule: TrainingSchedule) -> dict:
    """The firings oldest first, each run's main metric, its change on the previous run's and whether that is
    better (per the metric's direction); the blessing threshold and the deployed version for the chart."""
    metric = main_metric(schedule)
    lower = lower_is_better(metric)
    firings = list(
        ScheduleFiring.objects.filter(schedule=schedule)
        .select_related("run")
        .order_by("-scheduled_for", "-id")[:HISTORY_SHOWN]
    )
    rows, previous = [], None
    for firing in reversed(firings):
        run = firing.run
        value = (run.final_metrics or {}).get(metric) if run else None
        value = value if isinstance(value, int | float) else None
        delta = better = None
        if value is not None and previous is not None:
            delta = value - previous
            better = (delta < 0) if lower else (delta > 0)
        if value is not None:
            previous = value
        rows.append(_firing_row(firing, value, delta, better))
    return {
        "metric": metric,
        "metric_label": metric_label(metric),
        "lower_is_better": lower,
        "threshold": _threshold(schedule, metric),
        "deployed_version": schedule.registered_model.deployed_version,
        "firings": rows,
    }


def _firing_row(firing: ScheduleFiring, value, delta, better) -> dict:
    run = firing.run
    return {
        "id": firing.pk,
        "trigger": firing.trigger,
        "scheduled_for": firing.scheduled_for,
        "fired_by": firing.fired_by,
        "status": firing.status,
        "reason": firing.reason,
        "blessed_action": firing.blessed_action,
        "action_state": firing.action_state,
        "run_id": run.pk if run else None,
        "run_label": str(run) if run else None,
        "run_status": run.status if run else None,
        "version": run.registry_version if run else None,
        "blessed": run.blessed if run else None,
        "value": value,
        "delta": delta,
        "better": better,
        "duration_seconds": run.duration_seconds if run else None,
        "cost_usd": float(run.cost()) if run else None,
        "data_rows": (firing.data_signature or {}).get("rows"),
        "data_window": data_window(run.spec) if run else None,
    }


def next_runs(preview) -> dict:
    return {
        "summary": preview.description,
        "timezone": preview.timezone,
        "times": [{"at_utc": t.at_utc, "at_local": t.at_local, "note": t.note} for t in preview.times],
        "notes": preview.notes,
    }


# The trend chart's drawing box (SVG user units; the CSS sets its size on the page).
CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 600.0, 200.0, 28.0


def trend_chart(history: dict) -> dict | None:
    """The main metric per run as SVG geometry: a point per run that has it (better / worse / first), the
    blessing threshold as a line, the deployed version ringed. None before any run has the metric."""
    rows = [row for row in history["firings"] if row["value"] is not None]
    if not rows:
        return None
    values = [row["value"] for row in rows]
    threshold = history["threshold"]
    low, high = (
        min(values + ([threshold] if threshold is not None else [])),
        max(values + ([threshold] if threshold is not None else [])),
    )
    spread = (high - low) or abs(high) or 1.0
    low, high = low - spread * 0.1, high + spread * 0.1
    inner_w, inner_h = CHART_WIDTH - 2 * CHART_PAD, CHART_HEIGHT - 2 * CHART_PAD

    def y(value: float) -> float:
        return round(CHART_PAD + inner_h * (high - value) / (high - low), 1)

    step = inner_w / max(1, len(rows) - 1)
    points = []
    for index, row in enumerate(rows):
        points.append(
            {
                "x": round(CHART_PAD + (step * index if len(rows) > 1 else inner_w / 2), 1),
                "y": y(row["value"]),
                "value": row["value"],
                "label": f"v{row['version']}" if row["version"] else row["run_label"] or "",
                "kind": "first" if row["better"] is None else ("better" if row["better"] else "worse"),
                "deployed": bool(row["version"] and row["version"] == history["deployed_version"]),
                "run_id": row["run_id"],
            }
        )
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "pad": CHART_PAD,
        "right": CHART_WIDTH - CHART_PAD,
        "bottom": CHART_HEIGHT - CHART_PAD,
        "points": points,
        "line": " ".join(f"{p['x']},{p['y']}" for p in points),
        "threshold_y": y(threshold) if threshold is not None else None,
        "threshold": threshold,
        "top_label": round(high, 4),
        "bottom_label": round(low, 4),
    }
