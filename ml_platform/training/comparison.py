"""Runs side by side: configurations, final metrics and learning curves; a run against its source experiment.

Only the model-quality metrics are compared (loss, Recall@K, NDCG@K, MRR,
coverage, RMSE, MAE), each with its direction, so "better" means the same
thing everywhere: lower for losses and errors, higher for the rest.
"""

from __future__ import annotations

import re

from ml_pipeline.metrics import lower_is_better
from ml_platform.training.diffs import DIFFED, config_leaves
from ml_platform.training.models import EPOCH_METRICS, TrainingMetricsHistory, TrainingRun

QUALITY_METRIC = re.compile(r"^(loss|val_loss|rmse|mae|mrr|coverage|(recall|ndcg)_at_\d+)$")
CURVES = EPOCH_METRICS
MAX_COMPARED = 10


def quality_metrics(run: TrainingRun) -> dict[str, float]:
    return {
        name: value
        for name, value in (run.final_metrics or {}).items()
        if QUALITY_METRIC.match(name) and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def _metric_order(name: str) -> tuple:
    """loss first, then by family and K (recall_at_5 before recall_at_10 before recall_at_100)."""
    family, _, k = name.rpartition("_at_")
    if not family:
        return (0 if "loss" in name else 2, name, 0)
    return (1, family, int(k))


def _best(metric: str, values: list) -> int | None:
    present = [(value, index) for index, value in enumerate(values) if value is not None]
    if len(present) < 2:
        return None
    return (min if lower_is_better(metric) else max)(present)[1]


def compare(runs: list[TrainingRun]) -> dict:
    """Configs (every differing leaf marked), final metrics (the best one named) and overlaid learning curves."""
    leaves = [
        {
            path: value
            for label, name in DIFFED.items()
            for path, value in config_leaves(getattr(run, name), label).items()
        }
        for run in runs
    ]
    config = []
    for path in sorted(set().union(*leaves)):
        values = [found.get(path) for found in leaves]
        config.append({"field": path, "values": values, "differs": any(v != values[0] for v in values)})

    finals = [quality_metrics(run) for run in runs]
    metrics = []
    for name in sorted(set().union(*finals), key=_metric_order):
        values = [found.get(name) for found in finals]
        metrics.append(
            {
                "metric": name,
                "values": values,
                "lower_is_better": lower_is_better(name),
                "best_index": _best(name, values),
            }
        )

    history = (
        TrainingMetricsHistory.objects.filter(training_run__in=runs)
        .order_by("epoch")
        .values("training_run_id", "epoch", *CURVES)
    )
    curves: dict[str, list[dict]] = {
        name: [{"run_id": run.pk, "label": str(run), "points": []} for run in runs] for name in CURVES
    }
    position = {run.pk: index for index, run in enumerate(runs)}
    for row in history:
        for name in CURVES:
            if row[name] is not None:
                curves[name][position[row["training_run_id"]]]["points"].append([row["epoch"], row[name]])
    return {
        "runs": [_summary(run) for run in runs],
        "config": config,
        "metrics": metrics,
        "curves": {name: lines for name, lines in curves.items() if any(line["points"] for line in lines)},
    }


def _summary(run: TrainingRun) -> dict:
    return {
        "id": run.pk,
        "display_name": str(run),
        "kind": run.kind,
        "status": run.status,
        "model_type": run.model_type,
        "dataset_name": (run.dataset_snapshot or {}).get("name"),
        "blessed": run.blessed,
        "duration_seconds": run.duration_seconds,
        "epochs_run": (run.final_metrics or {}).get("epochs_run"),
        "created_at": run.created_at,
    }


def against_experiment(run: TrainingRun) -> dict:
    """Each metric both have: the run's value, the experiment's, the difference and whether it improved."""
    experiment = run.source_experiment
    mine, theirs = quality_metrics(run), quality_metrics(experiment)
    rows = []
    for name in sorted(mine.keys() & theirs.keys(), key=_metric_order):
        delta = mine[name] - theirs[name]
        rows.append(
            {
                "metric": name,
                "run": mine[name],
                "experiment": theirs[name],
                "delta": delta,
                "relative_delta": delta / abs(theirs[name]) if theirs[name] else None,
                "lower_is_better": lower_is_better(name),
                "improved": None if delta == 0 else (delta < 0) == lower_is_better(name),
            }
        )
    return {
        "run": _summary(run),
        "experiment": _summary(experiment),
        "sample_percent": {
            "run": (run.split_config or {}).get("sample_percent", 100.0),
            "experiment": (experiment.split_config or {}).get("sample_percent", 100.0),
        },
        "metrics": rows,
    }
