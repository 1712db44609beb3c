"""The New Training wizard (and its New experiment and Edit modes), a form in a ``<dialog>``.

Step 1 picks what to train (an experiment to promote, or a dataset, a feature config and a model config)
with their summaries; step 2 sets the parameters, with the live name check and the estimate. The inputs
are named by the API's field paths (``training_params.epochs``), so the posted form is the API's JSON
(``core.forms.nested``), checked by the API's input schema and handed to the API's own route function:
promote, create, create an experiment, or edit a run's config (PATCH). A refusal re-renders the form
with the API's problems next to their inputs.
"""

from __future__ import annotations

import json

from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from ml_pipeline.errors import ConfigError
from ml_platform.core.forms import REFUSALS, FieldErrors, checked, get, nested, refusal
from ml_platform.datasets.models import Dataset
from ml_platform.experiments import api as experiments_api
from ml_platform.modeling import services as modeling_services
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.projects.access import project_for_user
from ml_platform.registry import api as registry_api
from ml_platform.runners import choices as runner_choices
from ml_platform.runners import services as remote
from ml_platform.training import api as training_api
from ml_platform.training import estimates, presenters
from ml_platform.training.access import run_for_user
from ml_platform.training.models import TrainingRun
from ml_platform.training.schemas import RunConfigPatch, TrainingRunIn

TEMPLATE = "training/_wizard.html"
CREATE, PROMOTE, EXPERIMENT, EDIT = "create", "promote", "experiment", "edit"
STEP_ONE = ("experiment_id", "dataset_id", "feature_config_id", "model_config_id")
CATALOG_IDS = STEP_ONE[1:]
OPTIMIZERS = ("adagrad", "adam", "sgd")
STRATEGIES = ("random", "time_holdout", "strict_temporal")
THRESHOLD_METRICS = ("recall_at_10", "recall_at_50", "recall_at_100", "rmse", "mae")
DEFAULTS = {"training_params": {"epochs": 10, "batch_size": 1024, "early_stopping": {"enabled": True, "patience": 3}}}


def wizard(request, project_id: int):
    """The wizard's form: new (``?kind=experiment`` for a quick test), promoting ``?experiment_id=``, or
    editing ``?edit=<run id>`` (opened at step 2, saved with the API's PATCH)."""
    project = project_for_user(request.user, project_id)
    if edit := request.GET.get("edit"):
        run = run_for_user(request.user, _int(edit, "edit"))
        config = presenters.config_of(run)
        data = {key: config[key] for key in ("training_params", "gpu_config", "evaluator_config")}
        return _render(request, project, {**data, "edit": run.pk, "name": run.name}, EDIT, run=run)
    if request.GET.get("kind") == TrainingRun.EXPERIMENT:
        return _render(request, project, {**DEFAULTS, "split_config": {"sample_percent": 25}}, EXPERIMENT)
    data = dict(DEFAULTS)
    if experiment_id := request.GET.get("experiment_id"):
        experiment = run_for_user(request.user, _int(experiment_id, "experiment_id"), kind=TrainingRun.EXPERIMENT)
        data = {
            "experiment_id": experiment.pk,
            "training_params": {**DEFAULTS["training_params"], **experiment.training_params},
            "evaluator_config": experiment.evaluator_config,
        }
    return _render(request, project, data, CREATE)


def _int(value: str, field: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{field}: not a number") from None


def _render(request, project, data: dict, mode: str, errors: FieldErrors | None = None, run=None, status=200):
    errors = errors or FieldErrors()
    # Opened where the first problem is: step 1's choices, else the parameters (where Edit always opens).
    on_step_one = any(p.field.split(".")[0] in STEP_ONE for p in errors.problems)
    step = 1 if on_step_one else 2 if errors or mode == EDIT else 1
    return render(
        request,
        TEMPLATE,
        {
            "project": project,
            "data": data,
            "mode": mode,
            "run": run,
            "errors": errors,
            "start_step": step,
            "experiments": TrainingRun.objects.filter(
                project=project, kind=TrainingRun.EXPERIMENT, status=TrainingRun.COMPLETED
            ).only("id", "run_number", "name", "model_type", "final_metrics")[:50],
            "datasets": Dataset.objects.filter(project=project).only("id", "name"),
            "feature_configs": FeatureConfig.objects.filter(project=project).only("id", "name"),
            "model_configs": ModelConfig.objects.filter(project=project).only("id", "name", "model_type"),
            "summary": summary_of(project, data),
            "estimate": estimate_of(project, data),
            **runner_context(project, data),
            "optimizers": OPTIMIZERS,
            "strategies": STRATEGIES,
            "threshold_metrics": THRESHOLD_METRICS,
        },
        status=status,
    )


def runner_context(project, data: dict) -> dict:
    """The runner choices (configured ones enabled; local always is) and the GPU types, each disabled with
    its reason where the chosen runner cannot have it (Vertex AI outside its training region's types)."""
    runners = runner_choices.runner_options()
    configured = [option["runner"] for option in runners if option["configured"]]
    chosen = get(data, "runner") or remote.project_runner(project)
    chosen = chosen if chosen in configured else "local"
    gpus = [
        {**option, "reason": option["refused"].get(chosen, "")} for option in runner_choices.gpu_options(configured)
    ]
    return {
        "runners": runners,
        "chosen_runner": chosen,
        "gpu_options": gpus,
        "gpu_reasons": "; ".join(f"{g['gpu_type']}: {g['reason']}" for g in gpus if g["reason"]),
    }


# --------------------------------------------------------------------------- live parts


def summary_of(project, data: dict) -> dict:
    """What step 1 chose, in a line each: the dataset ("rows | users | products | span"), the features
    ("buyer_id: 32d | … | crosses: …") and a promoted experiment's verdict and metrics."""
    summary: dict = {}
    experiment = None
    if experiment_id := get(data, "experiment_id"):
        experiment = TrainingRun.objects.filter(
            project=project, kind=TrainingRun.EXPERIMENT, pk=_number(experiment_id)
        ).first()
    dataset_id = experiment.dataset_id if experiment else _number(get(data, "dataset_id"))
    features_id = experiment.feature_config_id if experiment else _number(get(data, "feature_config_id"))
    if dataset_id and (dataset := Dataset.objects.filter(project=project, pk=dataset_id).first()):
        summary["dataset"] = (dataset.preview or {}).get("summary") or dataset.preview_error or "not previewed yet"
    if features_id and (features := FeatureConfig.objects.filter(project=project, pk=features_id).first()):
        summary["features"] = feature_line(modeling_services.breakdown(features))
    if experiment is not None:
        metrics = experiment.final_metrics or {}
        summary["experiment"] = {
            "name": str(experiment),
            "model_type": experiment.model_type,
            "metrics": [(m, metrics[m]) for m in ("recall_at_10", "recall_at_100", "rmse", "mae") if m in metrics],
            "split": "test",  # an experiment's final metrics are its Evaluator's
            "blessed": experiment.blessed,
            "reasons": experiment.blessing_reasons or [],
        }
    return summary


def feature_line(breakdown: dict) -> str:
    parts, crosses = [], []
    for tower in breakdown.values():
        for feature in tower["features"]:
            if feature["kind"] == "cross":
                crosses.append(feature["name"].replace(" x ", "×"))
            else:
                parts.append(f"{feature['name']}: {feature['dim']}d")
    return " | ".join(parts + ([f"crosses: {', '.join(crosses)}"] if crosses else []))


def estimate_of(project, data: dict) -> dict | None:
    """The estimate for the form's values (an edited run's own dataset and model config), or None while step 1
    is not chosen yet."""
    dataset_id, model_config_id = _number(get(data, "dataset_id")), _number(get(data, "model_config_id"))
    if edited := _number(get(data, "edit")):
        run = TrainingRun.objects.filter(project=project, pk=edited).only("dataset_id", "model_config_id").first()
        if run is not None:
            dataset_id, model_config_id = run.dataset_id, run.model_config_id
    try:
        return estimates.estimate_for(
            project,
            experiment_id=_number(get(data, "experiment_id")),
            dataset_id=dataset_id,
            model_config_id=model_config_id,
            epochs=_number(get(data, "training_params.epochs")) or 10,
            sample_percent=_float(get(data, "split_config.sample_percent")),
            gpu_type=get(data, "gpu_config.gpu_type") or None,
            gpu_count=_number(get(data, "gpu_config.gpu_count")) or 0,
        ).as_dict()
    except ConfigError:
        return None


def _number(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _float(value) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def summary(request, project_id: int):
    project = project_for_user(request.user, project_id)
    return render(
        request,
        "training/_wizard_summary.html",
        {"summary": summary_of(project, nested(request.GET)), "project": project},
    )


def estimate(request, project_id: int):
    project = project_for_user(request.user, project_id)
    return render(
        request,
        "training/_wizard_estimate.html",
        {"estimate": estimate_of(project, nested(request.GET)), "project": project},
    )


def name_check(request, project_id: int):
    """Whether the name is new, as the registry API answers (a taken one trains that model's next version)."""
    project = project_for_user(request.user, project_id)
    name = request.GET.get("name", "").strip()
    check, scheduled = None, False
    if name:
        check = registry_api.check_model_name(request, project.id, name=name)
        if check["registered_model_id"]:
            scheduled = registry_api.get_registered_model(request, check["registered_model_id"])["has_schedule"]
    return render(request, "training/_wizard_name.html", {"check": check, "scheduled": scheduled})


# --------------------------------------------------------------------------- saving


@require_POST
def submit(request, project_id: int):
    project = project_for_user(request.user, project_id)
    data = nested(request.POST)
    mode = request.POST.get("_mode", CREATE)
    run = None
    # "Now, then schedule retraining" (_wizard_schedule_slot.html): a run now, and the schedule dialog after
    then_schedule = (data.get("schedule_config") or {}).get("schedule_type") == "then_schedule"
    if then_schedule:
        data["schedule_config"] = {**data["schedule_config"], "schedule_type": "none"}
    try:
        if mode == EDIT:
            run = run_for_user(request.user, _int(str(data.pop("edit", "")), "edit"))
            data.pop("name", None)
            training_api.update_config(request, run.pk, checked(RunConfigPatch, data))
            message = f"{run} saved"
        elif mode == EXPERIMENT:
            created = experiments_api.create_experiment(
                request, project.id, checked(experiments_api.ExperimentIn, data)
            )
            message = f"{created.value['display_name']} queued"
        elif get(data, "experiment_id"):
            experiment_id = _int(str(data.pop("experiment_id")), "experiment_id")
            for field in CATALOG_IDS:
                data.pop(field, None)
            payload = checked(experiments_api.PromoteIn, data)
            created = experiments_api.promote_experiment(request, experiment_id, payload)
            message = f"{created.value['display_name']} queued (promoted from Exp)"
        else:
            created = training_api.create_training_run(request, project.id, checked(TrainingRunIn, data))
            message = f"{created.value['display_name']} queued"
    except REFUSALS as error:
        refused = refusal(error)
        kept = {**data, **_kept(request), "then_schedule": then_schedule}
        return _render(request, project, kept, mode, FieldErrors.of(refused), run=run)
    events = {"toast": {"level": "success", "message": message}, "runs-changed": True, "wizard-done": True}
    if then_schedule and mode != EXPERIMENT and mode != EDIT:
        events["schedule-run"] = {"url": f"{reverse('schedule-new')}?run={created.value['id']}"}
    response = HttpResponse("")
    response["HX-Trigger"] = json.dumps(events)
    return response


def _kept(request) -> dict:
    """The form's own fields put back into a re-rendered form (the ids popped before the schema)."""
    return {key: request.POST[key] for key in ("experiment_id", "edit") if request.POST.get(key)}
