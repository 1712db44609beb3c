"""Experiments (quick tests): the "best experiments" ranking per model type.

An experiment is a :class:`~ml_platform.training.models.TrainingRun` of kind
``experiment`` (same queue, worker, stages and progress, without the
Pusher), so creating, cancelling and deleting one are the training services;
what is particular to experiments is how they are ranked.

The ranking is on the eval split (the Trainer's ``eval_<metric>``: what early
stopping watched; the Evaluator's test figures are reported, never chosen on),
computed by the database (metrics are read out of the JSON
``final_metrics`` column and compared as numbers), so it costs a few queries
however many experiments a project has (bench/api.py measures it).
"""

from __future__ import annotations

from django.db.models import Count, F, FloatField, Max, Min
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

from ml_pipeline.blessing import advice
from ml_pipeline.metrics import EVAL_PREFIX, lower_is_better
from ml_platform.training.models import TrainingRun

TOP_CONFIGURATIONS = 10
RECALL_KS = (5, 10, 50, 100)
# Per model type: the KPI boxes as (metric, split), the spec's rows. An eval box is the best eval figure;
# a test box is the test figure of the experiment best on eval (the test split is reported, never chosen on).
KPIS = {
    "retrieval": [(f"recall_at_{k}", "eval") for k in RECALL_KS],
    "ranking": [("rmse", "eval"), ("rmse", "test"), ("mae", "eval"), ("mae", "test")],
    "multitask": [("recall_at_50", "eval"), ("recall_at_100", "eval"), ("rmse", "eval"), ("rmse", "test")],
}
RECALLS_LARGEST_FIRST = [f"recall_at_{k}" for k in reversed(RECALL_KS)]
MAIN_METRICS = {"retrieval": RECALLS_LARGEST_FIRST, "ranking": ["rmse"], "multitask": RECALLS_LARGEST_FIRST}


def metric(name: str):
    """A final metric of the eval split (the Trainer's, at the exported epoch) as a number, in SQL (NULL when
    the experiment has none). Experiments are chosen on eval: the test split is reported, never chosen on."""
    return Cast(KT(f"final_metrics__{EVAL_PREFIX}{name}"), FloatField())


def best_experiments(project, dataset_id: int | None = None) -> list[dict]:
    """Per model type: how many experiments, the best value of each KPI, and the top configurations.

    ``count`` is every experiment of that type; ``completed`` those that
    finished, the only ones the KPIs and the table consider. Metrics from
    different datasets are not comparable: ``dataset_id`` keeps one.
    """
    experiments = TrainingRun.objects.filter(project=project, kind=TrainingRun.EXPERIMENT)
    if dataset_id is not None:
        experiments = experiments.filter(dataset_id=dataset_id)
    counts = dict(experiments.order_by().values_list("model_type").annotate(count=Count("id")))
    answer = []
    for model_type, kpis in KPIS.items():
        completed = experiments.filter(status=TrainingRun.COMPLETED, model_type=model_type)
        names = {name for name, _ in kpis}
        best = completed.aggregate(
            completed=Count("id"), **{name: (Min if lower_is_better(name) else Max)(metric(name)) for name in names}
        )
        answer.append(
            {
                "model_type": model_type,
                "count": counts.get(model_type, 0),
                "completed": best.pop("completed"),
                "kpis": [
                    {
                        "metric": name,
                        "split": split,
                        "best": best[name] if split == "eval" else test_figure_of_best_on_eval(completed, name),
                        "lower_is_better": lower_is_better(name),
                    }
                    for name, split in kpis
                ],
                "main_metric": MAIN_METRICS[model_type][0],
                "top": top_configurations(completed, model_type),
            }
        )
    return answer


def test_figure_of_best_on_eval(completed, name: str) -> float | None:
    """The test-split ``name`` of the experiment with the best eval ``name`` (None when none was tested)."""
    order = F("on_eval").asc() if lower_is_better(name) else F("on_eval").desc()
    return (
        completed.filter(final_metrics__holdout="test")
        .annotate(on_eval=metric(name), on_test=Cast(KT(f"final_metrics__{name}"), FloatField()))
        .filter(on_eval__isnull=False, on_test__isnull=False)
        .order_by(order, "-id")
        .values_list("on_test", flat=True)
        .first()
    )


def top_configurations(completed, model_type: str) -> list[dict]:
    candidates = MAIN_METRICS[model_type]
    main = Coalesce(*map(metric, candidates)) if len(candidates) > 1 else metric(candidates[0])
    order = F("main").asc() if lower_is_better(candidates[0]) else F("main").desc()
    # Only the JSON keys the table shows, read by the database: a spec is kilobytes.
    rows = (
        completed.annotate(main=main)
        .filter(main__isnull=False)
        .order_by(order, "-id")
        .values(
            "id",
            "run_number",
            "name",
            "main",
            "blessed",
            "blessing_reasons",
            "feature_config__name",
            "model_config__name",
            metrics=F("final_metrics"),
            dataset_name=F("dataset_snapshot__name"),
            learning_rate=F("spec__training__learning_rate"),
            model_learning_rate=F("spec__model__learning_rate"),
            batch_size=F("spec__training__batch_size"),
            epochs=F("spec__training__epochs"),
            sample_percent=F("spec__split__sample_percent"),
        )[:TOP_CONFIGURATIONS]
    )
    top = []
    for rank, row in enumerate(rows, start=1):
        metrics = row["metrics"] or {}
        top.append(
            {
                "rank": rank,
                "experiment_id": row["id"],
                "display_name": str(
                    TrainingRun(kind=TrainingRun.EXPERIMENT, run_number=row["run_number"], name=row["name"])
                ),
                "dataset_name": row["dataset_name"],
                "feature_config_name": row["feature_config__name"],
                "model_config_name": row["model_config__name"],
                # The spec holds the effective values (defaults filled in); the model config's rate unless overridden.
                "learning_rate": row["learning_rate"] or row["model_learning_rate"],
                "batch_size": row["batch_size"],
                "epochs": row["epochs"],
                "epochs_run": metrics.get("epochs_run"),
                "sample_percent": row["sample_percent"],
                "metric": next(
                    name for name in candidates if isinstance(metrics.get(f"{EVAL_PREFIX}{name}"), (int, float))
                ),
                "split": "eval",
                "value": row["main"],
                "advice": advice(row["blessed"], row["blessing_reasons"] or []),
                "loss": metrics.get("loss"),
            }
        )
    return top
