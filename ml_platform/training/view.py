"""The view modal's tabs (js/components/view_modal.js): one partial per tab, rendered in the modal and on
the run's page (its no-JS and deep-link fallback, training/run_page.html), from the API's presenters. The
Pipeline tab's stages, logs and lineage are training/view_pipeline.py's.

A tab's answer carries the modal's header too (swapped out of band), so the one request a refresh makes
brings the status, the clock, the cost and the allowed actions (``rules.allowed``, through the card) with
the tab. The modal asks again while the run is not terminal and stops once it is.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.http import Http404, HttpResponse
from django.shortcuts import render

from ml_pipeline.config import features as feature_schema
from ml_pipeline.config import model as model_schema
from ml_platform.core import clock
from ml_platform.core.errors import DomainError
from ml_platform.deployment.cloud import missing_settings
from ml_platform.deployment.targets import NOT_CONFIGURED, available_targets
from ml_platform.training import comparison, outputs, presenters, view_pipeline
from ml_platform.training.access import run_for_user
from ml_platform.training.models import TrainingRun

TABS = {
    "overview": "Overview",
    "pipeline": "Pipeline",
    "insights": "Data insights",
    "training": "Training",
    "results": "Results",
    "config": "Configuration",
}
# Tabs that were renamed: an older link's ?tab= still opens them (js/components/view_modal.js has the same).
TAB_ALIASES = {"progress": "training"}
RECALLS = ("recall_at_5", "recall_at_10", "recall_at_50", "recall_at_100")
RATINGS = ("rmse", "mae", "test_rmse", "test_mae")
# The chips of a dataset's filters, by what they filter: a colour each (view-modal.css).
FILTER_KINDS = {"date": "date", "customer": "customer", "product": "product"}
PARTS = {"buyer_tower": "Query tower", "product_tower": "Candidate tower", "rating_head": "Rating head"}
DEPLOY_TARGETS = (("local", "Local endpoint"), ("vertex_ai", "Vertex AI"), ("cloud_run", "Cloud Run"))


def run_view(request, run_id: int, tab: str):
    """One tab of the modal (with the header, out of band); ``?split=`` (Data insights), ``?stage=`` (Pipeline)."""
    tab = TAB_ALIASES.get(tab, tab)
    if tab not in TABS:
        raise Http404(f"No tab '{tab}'")
    run = run_for_user(request.user, run_id, *presenters.DETAIL_RELATED, kind=None)
    problem = view_pipeline.stage_problem(request.GET.get("stage"))
    if problem:
        return HttpResponse(problem, status=422, content_type="text/plain; charset=utf-8")
    context = view_context(run, tab, request.GET.get("split"), request.GET.get("stage"))
    return render(request, "training/view/_tab.html", {**context, "oob": True})


def view_context(run: TrainingRun, tab: str | None = None, split: str | None = None, stage: str | None = None) -> dict:
    """What the header and the tab ``tab`` show (every tab when None: the run's page); ``split``: the Data
    insights tab's, ``stage``: the Pipeline tab's chosen stage."""
    from ml_platform.training.pages import card_of  # the card's actions: the same rules as the cards
    from ml_platform.training.views import statistics_context  # the statistics report's tables

    detail = presenters.run_detail(run)
    card = card_of(run.pk)
    wanted = set(TABS) if tab is None else {tab}
    context = {
        "run": detail,
        "card": card,
        "project": run.project,
        "tab": tab,
        "tabs": TABS,
        "mode": "experiment" if run.is_experiment else "training_run",
        "clock": clock_of(run),
        "terminal": run.is_terminal,
        "in_modal": tab is not None,  # a tab's links swap its panel (htmx); on the run's page they load a page
    }
    context["deployment"] = deployment_of(run)
    # Asked for again while the run goes on, or a deploy or undeploy of its model is in flight.
    context["settled"] = run.is_terminal and not (context["deployment"] or {}).get("in_flight")
    if wanted & {"overview", "results"}:
        context["summary"] = results_summary(run, detail)
    if "overview" in wanted:
        context.update(overview(run, detail, card))
    if wanted & {"training", "results"}:
        context["epochs"] = outputs.metrics_of(run, "training" in wanted)["epochs"]
        context["curves"] = curves(context["epochs"])
        context["ridges"] = ridges(context["epochs"])
        context["parts"] = [(p, PARTS.get(p, p)) for p in PARTS if any(p in k for k in context["ridges"].values())]
    if "training" in wanted:
        context.update(progress(run, detail, context["epochs"]))
    if "pipeline" in wanted:
        context.update(view_pipeline.pipeline(run, detail, stage))
    if "results" in wanted:
        context["mlflow_url"] = mlflow_url(run)
        context["against"] = comparison.against_experiment(run) if run.source_experiment_id else None
        context["early_stopping"] = early_stopping(run)
    if "insights" in wanted:
        context["statistics"] = _statistics(run)
        if context["statistics"]:
            context.update(statistics_context(run, context["statistics"], split), in_modal=tab is not None)
    if wanted & {"config", "results"}:
        context["config_json"] = json.dumps(
            {
                key: detail[key]
                for key in ("split_config", "training_params", "gpu_config", "evaluator_config", "config_diff")
            },
            indent=2,
            default=str,
        )
    return context


def clock_of(run: TrainingRun) -> dict:
    """Started, elapsed (while it runs) and duration (once it ended), in seconds."""
    elapsed = None
    if run.started_at and not run.is_terminal:
        elapsed = (clock.now() - run.started_at).total_seconds()
    return {"started_at": run.started_at, "elapsed": elapsed, "duration": run.duration_seconds}


def results_summary(run: TrainingRun, detail: dict) -> list[dict]:
    """The final metrics the model type reports, each with its split and the naive baseline's number."""
    metrics = detail["final_metrics"] or {}
    splits = detail["metric_splits"] or {}
    names = {"retrieval": RECALLS, "ranking": RATINGS}.get(run.model_type, RECALLS + RATINGS)
    rows = []
    for name in names:
        value = metrics.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        baseline_name, baseline = "popularity", metrics.get(f"popularity_{name}")
        if name.endswith(("rmse", "mae")):
            baseline_name, baseline = "mean", metrics.get(f"mean_baseline_{name.removeprefix('test_')}")
        rows.append(
            {
                "name": name,
                "value": value,
                "split": splits.get(name, "eval"),
                "baseline_name": baseline_name,
                "baseline": baseline if isinstance(baseline, (int, float)) else None,
            }
        )
    return rows


def filter_chips(filters: dict) -> list[dict]:
    """A dataset's filters as chips: dates (blue), customers (green), product conditions (purple)."""
    chips = []
    if filters.get("last_days"):
        chips.append({"kind": "date", "text": f"Last {filters['last_days']} days"})
    if filters.get("date_from") or filters.get("date_to"):
        chips.append({"kind": "date", "text": f"{filters.get('date_from') or '…'} → {filters.get('date_to') or '…'}"})
    for key, verb in (("include_buyers", "Only"), ("exclude_buyers", "Not")):
        if filters.get(key):
            chips.append({"kind": "customer", "text": f"{verb} {len(filters[key])} customers"})
    for condition in filters.get("conditions") or []:
        text = " ".join(str(condition.get(k, "")) for k in ("column", "op", "value")).strip()
        chips.append({"kind": "product", "text": text or json.dumps(condition)})
    return chips


def overview(run: TrainingRun, detail: dict, card: dict) -> dict:
    snapshot = detail["dataset_snapshot"] or {}
    try:
        parsed = feature_schema.FeatureConfig.model_validate(run.feature_config_snapshot or {})
        towers = feature_schema.tensor_breakdown(parsed)
    except (ValueError, TypeError):
        towers = {}
    model = run.model_config_snapshot or {}
    try:
        counts = model_schema.parameter_counts(model_schema.ModelConfig.model_validate(model), parsed)
    except (ValueError, TypeError, NameError):
        counts = None
    return {
        "dataset": snapshot,
        "filter_chips": filter_chips(snapshot.get("filters") or {}),
        # the split's date column: the dataset's timestamp role (a time split orders rows by it)
        "date_column": (snapshot.get("mapping") or {}).get("timestamp"),
        "towers": [(name, part) for name, part in towers.items() if isinstance(part, dict) and "features" in part],
        "target": (run.feature_config_snapshot or {}).get("target"),
        "model_stacks": [
            (label, model.get(key) or [])
            for key, label in (("buyer_tower", "Query tower"), ("product_tower", "Candidate tower"))
            if model.get(key)
        ],
        "rating_head": model.get("rating_head"),
        "parameter_counts": _flat_counts(counts),
        "model_extra": {k: v for k, v in model.items() if not isinstance(v, (list, dict))},
        "registry": registry_state(run, card),
        "deploy_targets": deploy_targets(),
    }


def deploy_targets() -> list[dict]:
    """The Deployment section's buttons: each target, with why it cannot be used here (None: it can)."""
    configured = available_targets()
    missing = ", ".join(missing_settings())
    return [
        {
            "name": name,
            "label": label,
            "reason": None if name in configured else f"{NOT_CONFIGURED[name]}: set {missing}",
        }
        for name, label in DEPLOY_TARGETS
    ]


def target_label(name: str | None) -> str:
    return dict(DEPLOY_TARGETS).get(name or "local", name or "")


def _flat_counts(counts) -> dict:
    """Parameter counts as label -> number: each tower's, the rating head's, the total."""
    if not isinstance(counts, dict):
        return {}
    parts = {f"{name} tower": part for name, part in (counts.get("towers") or {}).items()}
    parts.update({name: value for name, value in counts.items() if name != "towers"})
    flat = {}
    for name, value in parts.items():
        value = value.get("total", value.get("trainable")) if isinstance(value, dict) else value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name.replace("_", " ")] = f"{int(value):,}"
    return flat


def deployment_of(run: TrainingRun) -> dict | None:
    """The run's registered model's deployment: which version serves where, and whether a request is pending."""
    if run.registered_model_id is None:
        return None
    from ml_platform.deployment.models import Deployment

    found = Deployment.objects.filter(registered_model_id=run.registered_model_id).first()
    if found is None:
        return None
    return {
        "in_flight": bool(found.pending_action),
        "pending_action": found.pending_action,
        "state": found.state,
        "version": found.version,
        "target": found.get_target_display(),
        "endpoint_url": found.endpoint_url,
        "message": found.message,
    }


def registry_state(run: TrainingRun, card: dict) -> str:
    """The spec's registry states: hidden (running or failed), evaluation failed, not registered, registered."""
    if run.is_experiment or run.status in (TrainingRun.FAILED, TrainingRun.CANCELLED) or not run.is_terminal:
        return "hidden"
    if run.blessed is False or run.status == TrainingRun.NOT_BLESSED:
        return "evaluation_failed"
    return "registered" if card["registry_version"] else "not_registered"


def progress(run: TrainingRun, detail: dict, epochs: list[dict]) -> dict:
    """The top of the Training tab: overall progress, each stage's line (status, duration, summary; a running
    Trainer's is its epoch and loss), resources."""
    stages = view_pipeline.stage_lines(run, detail)
    trainer = next((s for s in stages if s["name"] == "Trainer"), None)
    if trainer and trainer["status"] == "running" and not trainer["summary"] and run.total_epochs:
        loss = epochs[-1].get("loss") if epochs else None
        trainer["summary"] = f"Epoch {run.current_epoch or 0}/{run.total_epochs}" + (
            f" (Loss: {loss:.3g})" if isinstance(loss, (int, float)) else ""
        )
    done = sum(s["status"] in ("completed", "cached", "skipped") for s in stages)
    return {
        "done_stages": done,
        "progress_pct": round(100 * done / len(stages)) if stages else 0,
        "resources": resource_lines(run.resources or {}),
    }


RESOURCE_LABELS = {"cpu_pct": ("Process CPU", "{:.0f}%"), "rss_mb": ("Memory", "{:,.0f} MB")}


def resource_lines(resources: dict) -> list[tuple[str, str]]:
    """The last resource sample as label, text: CPU, memory, then each GPU's memory and utilization."""
    lines = [
        (label, form.format(resources[key]))
        for key, (label, form) in RESOURCE_LABELS.items()
        if isinstance(resources.get(key), (int, float))
    ]
    for index, gpu in enumerate(resources.get("gpus") or []):
        if isinstance(gpu, dict):
            used, total, busy = gpu.get("memory_used_mb"), gpu.get("memory_total_mb"), gpu.get("utilization_pct")
            lines.append((f"GPU {index} memory", f"{used or 0:,.0f} / {total or 0:,.0f} MB"))
            if busy is not None:
                lines.append((f"GPU {index} utilization", f"{busy:.0f}%"))
    return lines


def early_stopping(run: TrainingRun) -> dict | None:
    """What early stopping did, from the Trainer's properties in the final metrics (stages/trainer.py:
    ``early_stopped_epoch``, None when it ran every epoch; ``best_epoch``; ``epochs_run``), and its patience."""
    metrics = run.final_metrics or {}
    setting = (run.training_params or {}).get("early_stopping") or {}
    if not setting.get("enabled"):
        return None
    return {
        "stopped_at": metrics.get("early_stopped_epoch"),
        "best_epoch": metrics.get("best_epoch"),
        "epochs_run": metrics.get("epochs_run"),
        "patience": setting.get("patience"),
    }


def mlflow_url(run: TrainingRun) -> str | None:
    """The run in MLflow's own UI, when one is configured (``MLFLOW_UI_URL``): its direct run page, which
    finds the run's experiment by itself."""
    base = settings.MLFLOW_UI_URL
    if not base or not run.mlflow_run_id:
        return None
    return f"{base.rstrip('/')}/#/runs/{run.mlflow_run_id}"


def curves(epochs: list[dict]) -> dict:
    """Per-epoch series for the charts: {metric: [[epoch, value], ...]} of every metric recorded."""
    series: dict[str, list] = {}
    for row in epochs:
        scalars = {**(row.get("metrics") or {}), **row}
        for name, value in scalars.items():
            if name in ("epoch", "metrics", "resources", "recorded_at", "histograms"):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(name, []).append([row["epoch"], value])
    return series


def ridges(epochs: list[dict]) -> dict:
    """The ridgeline's data: {weights|gradients: {part: [{epoch, counts, edges}, ...]}}, epoch by epoch."""
    found: dict[str, dict[str, list]] = {"weights": {}, "gradients": {}}
    for row in epochs:
        for kind, parts in (row.get("histograms") or {}).items():
            for part, histogram in (parts or {}).items():
                if kind in found and histogram.get("counts"):
                    found[kind].setdefault(part, []).append({"epoch": row["epoch"], **histogram})
    return found


def _statistics(run: TrainingRun) -> dict | None:
    try:
        return outputs.statistics_of(run)
    except DomainError:
        return None
