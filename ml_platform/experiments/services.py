"""Experiments (quick tests): the "best experiments" ranking per model type.

An experiment is a :class:`~ml_platform.training.models.TrainingRun` of kind
``experiment`` (same queue, worker, stages and progress, without the
Pusher), so creating, cancelling and deleting one are the training services;
what is particular to experiments is how they are ranked.
"""

from __future__ import annotations

from django.db.models import Count, F

from ml_platform.training.models import TrainingRun

TOP_CONFIGURATIONS = 10
RECALL_KS = (5, 10, 50, 100)
# Per model type: the KPI boxes (metric, higher or lower is better) and the metric that ranks the table.
KPIS = {
    "retrieval": [(f"recall_at_{k}", "max") for k in RECALL_KS],
    "ranking": [("rmse", "min"), ("mae", "min")],
    "multitask": [("recall_at_50", "max"), ("recall_at_100", "max"), ("rmse", "min"), ("mae", "min")],
}
MAIN_METRIC = {"retrieval": ("recall_at_100", "max"), "ranking": ("rmse", "min"), "multitask": ("recall_at_100", "max")}


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _main_metric(model_type: str, metrics: dict) -> tuple[str, str]:
    """recall_at_100 unless the experiment computed smaller Ks only: then its largest Recall@K."""
    name, direction = MAIN_METRIC[model_type]
    if name.startswith("recall_at_") and _number(metrics.get(name)) is None:
        ks = sorted(int(key.rsplit("_", 1)[1]) for key, value in metrics.items()
                    if key.startswith("recall_at_") and key.rsplit("_", 1)[1].isdigit() and _number(value) is not None)
        if ks:
            name = f"recall_at_{ks[-1]}"
    return name, direction


def _row(experiment: dict, model_type: str) -> dict | None:
    metrics = experiment["final_metrics"] or {}
    name, direction = _main_metric(model_type, metrics)
    value = _number(metrics.get(name))
    if value is None:
        return None
    return {
        "experiment_id": experiment["id"],
        "display_name": str(TrainingRun(kind=TrainingRun.EXPERIMENT, run_number=experiment["run_number"],
                                        name=experiment["name"])),
        "dataset_name": experiment["dataset_name"],
        "feature_config_name": experiment["feature_config__name"],
        "model_config_name": experiment["model_config__name"],
        # The spec holds the effective values (defaults filled in); the model config's rate unless overridden.
        "learning_rate": experiment["learning_rate"] or experiment["model_learning_rate"],
        "batch_size": experiment["batch_size"],
        "epochs": experiment["epochs"],
        "epochs_run": metrics.get("epochs_run"),
        "sample_percent": experiment["sample_percent"],
        "metric": name,
        "value": value,
        "loss": _number(metrics.get("loss")),
        "_sort": value if direction == "min" else -value,
    }


def best_experiments(project) -> list[dict]:
    """Per model type: how many experiments, the best value of each KPI, and the top configurations.

    Only completed experiments with metrics count towards the KPIs and the
    table; ``count`` is every experiment of that type, ``completed`` those
    that finished.
    """
    experiments = TrainingRun.objects.filter(project=project, kind=TrainingRun.EXPERIMENT)
    counts = dict(experiments.order_by().values_list("model_type").annotate(count=Count("id")))
    # Only the JSON keys the table shows, read by the database: a spec is kilobytes, and there may be thousands.
    finished = experiments.filter(status=TrainingRun.COMPLETED).values(
        "id", "run_number", "name", "model_type", "final_metrics", "feature_config__name", "model_config__name",
        dataset_name=F("dataset_snapshot__name"), learning_rate=F("spec__training__learning_rate"),
        model_learning_rate=F("spec__model__learning_rate"), batch_size=F("spec__training__batch_size"),
        epochs=F("spec__training__epochs"), sample_percent=F("spec__split__sample_percent"))
    by_type: dict[str, list[dict]] = {model_type: [] for model_type in KPIS}
    for experiment in finished:
        by_type.setdefault(experiment["model_type"], []).append(experiment)

    answer = []
    for model_type, kpis in KPIS.items():
        done = by_type[model_type]
        best = {}
        for metric, direction in kpis:
            values = [v for v in (_number((e["final_metrics"] or {}).get(metric)) for e in done) if v is not None]
            best[metric] = (min if direction == "min" else max)(values) if values else None
        rows = sorted(filter(None, (_row(e, model_type) for e in done)),
                      key=lambda row: (row["_sort"], -row["experiment_id"]))
        top = [{k: v for k, v in row.items() if k != "_sort"} | {"rank": i}
               for i, row in enumerate(rows[:TOP_CONFIGURATIONS], start=1)]
        answer.append({
            "model_type": model_type,
            "count": counts.get(model_type, 0),
            "completed": len(done),
            "kpis": [{"metric": metric, "best": best[metric], "lower_is_better": direction == "min"}
                     for metric, direction in kpis],
            "main_metric": MAIN_METRIC[model_type][0],
            "top": top,
        })
    return answer

