"""The new / edit feature config and model config pages, with the tensor breakdown and parameter counts live.

As for datasets (ml_platform.datasets.editing): inputs are named by the API's field paths, a save goes
through the API's input schema and the same service (audited with it), and the live panel shows the draft
that service would save (``draft_feature_config`` / ``draft_model_config``: the same checks, nothing
written), so what it shows is what the API would answer.
"""

from __future__ import annotations

import typing
import uuid

from django.contrib import messages
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from ml_pipeline.config import features as feature_schema
from ml_pipeline.config import model as model_schema
from ml_pipeline.config.dataset import ColumnMapping
from ml_platform.audit import services as audit
from ml_platform.core import forms
from ml_platform.core.partials import is_htmx
from ml_platform.datasets.models import Dataset
from ml_platform.modeling import services
from ml_platform.modeling.api import FeatureConfigIn, FeatureConfigPatch, ModelConfigIn, ModelConfigPatch
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from ml_platform.projects.access import object_for_user, project_for_user

TOWERS = [("buyer", "Buyer (query) tower"), ("product", "Product (candidate) tower")]
FEATURE_KINDS = ["id", "categorical", "numeric", "timestamp", "text"]
PERIODS = list(feature_schema.CYCLICAL_PERIODS)
TARGET_OPS = list(feature_schema.TARGET_TRANSFORMS)
LAYER_TYPES = [("dense", "Dense"), ("dropout", "Dropout"), ("batch_norm", "Batch norm")]
ACTIVATIONS = list(model_schema.ACTIVATIONS)
OPTIMIZERS = list(typing.get_args(model_schema.ModelConfig.model_fields["optimizer"].annotation))
ALGORITHMS = [("brute_force", "Brute force"), ("scann", "ScaNN")]
MODEL_TYPES = ModelConfig.MODEL_TYPES

NEW_FEATURE_CONFIG = {
    "buyer_tower": {"features": [{"kind": "id", "column": "buyer_id", "embedding_dim": 32}]},
    "product_tower": {"features": [{"kind": "id", "column": "product_id", "embedding_dim": 32}]},
}
NEW_MODEL_CONFIG = {
    "model_type": "retrieval",
    "buyer_tower": [{"type": "dense", "units": 64}],
    "product_tower": [{"type": "dense", "units": 64}],
}


# --- the form's data ----------------------------------------------------------------------------------------


def _feature_form(post) -> dict:
    data = forms.nested(post)
    config = data.setdefault("config", {})
    target = config.get("target")
    if isinstance(target, dict) and not target.get("column"):
        config.pop("target")  # "no target": its transforms, left in the form, go with it
    for tower in ("buyer_tower", "product_tower"):
        for feature in forms.get(config, f"{tower}.features") or []:
            if "log1p" in feature:
                feature["log1p"] = feature["log1p"] == "true"
    return data


def _model_form(post) -> dict:
    data = forms.nested(post, lists=("config.retrieval_k",))
    if not data.get("feature_config_id"):
        data["feature_config_id"] = None
    return data


def _new_feature_item(path: str):
    if path.endswith(".crosses"):
        return {"columns": [], "hash_buckets": 1000, "embedding_dim": 8}
    if path.endswith(".transforms"):
        return {"op": "log1p"}
    return {"kind": "categorical", "column": ""}


def _new_layer(path: str):
    return {"type": "dense", "units": 64}


# --- saving, for real or as a draft -------------------------------------------------------------------------


def _fields(kind: str, data: dict, instance) -> dict:
    """The form's data through the API's input schema: a new config's fields, or an edit's changes."""
    schema_in, schema_patch = (
        (FeatureConfigIn, FeatureConfigPatch) if kind == "feature" else (ModelConfigIn, ModelConfigPatch)
    )
    if instance is None:
        return forms.checked(schema_in, data).model_dump(mode="json")
    return forms.checked(schema_patch, data).model_dump(mode="json", exclude_unset=True)


def _save(request, project, kind: str, data: dict, instance):
    """Create or update a config through the API's schema and service, audited with it, together or not at all."""
    save = services.save_feature_config if kind == "feature" else services.save_model_config
    fields = _fields(kind, data, instance)
    with transaction.atomic():
        saved = save(project, request.user, fields, instance=instance)
        action = audit.Action.CREATE if instance is None else audit.Action.UPDATE
        audit.record(request, action, saved, changes=fields)
    return saved


def _draft(request, project, kind: str, data: dict, instance):
    """What saving the form would store, by the same schema and service checks, written nowhere."""
    draft = services.draft_feature_config if kind == "feature" else services.draft_model_config
    return draft(project, request.user, _fields(kind, data, instance), instance=instance)


def _live_result(kind: str, saved) -> dict:
    if kind == "feature":
        return {"breakdown": services.breakdown(saved)}
    return {
        "counts": services.parameter_counts(saved),
        "most": services.parameter_counts_at_max_vocab(saved),
        "paired": saved.feature_config,
    }


# --- pages --------------------------------------------------------------------------------------------------


def _dataset_columns(dataset: Dataset | None) -> list[tuple[str, str]]:
    """(output column, its type) of the dataset's mapping: what a feature may read."""
    if dataset is None:
        return []
    return list(ColumnMapping.model_validate(dataset.mapping).output_columns().items())


def _feature_context(project, data: dict, instance) -> dict:
    datasets = list(project.datasets.all())
    chosen = str(data.get("dataset_id", ""))
    dataset = next((d for d in datasets if str(d.id) == chosen), None)
    return {
        "datasets": datasets,
        "chosen_dataset": dataset,
        "columns": _dataset_columns(dataset),
        "column_names": [name for name, _ in _dataset_columns(dataset)],
        "towers": TOWERS,
        "kinds": FEATURE_KINDS,
        "periods": PERIODS,
        "target_ops": TARGET_OPS,
    }


def _model_context(project, data: dict, instance) -> dict:
    return {
        "feature_configs": list(project.feature_configs.all()),
        "model_types": MODEL_TYPES,
        "layer_types": LAYER_TYPES,
        "activations": ACTIVATIONS,
        "optimizers": OPTIMIZERS,
        "algorithms": ALGORITHMS,
        "stacks": [("buyer_tower", "Buyer tower"), ("product_tower", "Product tower")],
    }


KINDS = {
    "feature": {
        "model": FeatureConfig,
        "form": _feature_form,
        "new_item": _new_feature_item,
        "context": _feature_context,
        "page": "modeling/feature_config_edit.html",
        "part": "modeling/_feature_form.html",
        "live": "modeling/_breakdown.html",
        "detail": "feature-config",
        "new_url": "feature-config-new",
        "edit_url": "feature-config-edit",
        "live_url": "feature-config-live",
    },
    "model": {
        "model": ModelConfig,
        "form": _model_form,
        "new_item": _new_layer,
        "context": _model_context,
        "page": "modeling/model_config_edit.html",
        "part": "modeling/_model_form.html",
        "live": "modeling/_live_counts.html",
        "detail": "model-config",
        "new_url": "model-config-new",
        "edit_url": "model-config-edit",
        "live_url": "model-config-live",
    },
}


def data_of(instance: FeatureConfig | ModelConfig) -> dict:
    data = {"name": instance.name, "description": instance.description, "config": instance.config}
    if isinstance(instance, FeatureConfig):
        data["dataset_id"] = instance.dataset_id
    else:
        data["feature_config_id"] = instance.feature_config_id
    return data


def _context(request, project, kind: str, data: dict, instance, *, errors=None, live=None) -> dict:
    spec = KINDS[kind]
    return {
        "project": project,
        "instance": instance,
        "data": data,
        "errors": errors or forms.FieldErrors(),
        "live": live,
        "form_url": reverse(spec["edit_url"], args=[instance.id])
        if instance
        else reverse(spec["new_url"], args=[project.id]),
        "live_url": reverse(spec["live_url"], args=[project.id]),
        **spec["context"](project, data, instance),
    }


def _live(request, project, kind: str, data: dict, instance) -> dict | forms.FieldErrors:
    if not data.get("name"):
        data = {**data, "name": f"preview-{uuid.uuid4().hex}"}  # counts need no name yet
    try:
        return _live_result(kind, _draft(request, project, kind, data, instance))
    except forms.REFUSALS as error:
        return forms.FieldErrors.of(forms.refusal(error))


def _form_page(request, project, kind: str, instance, initial: dict):
    spec = KINDS[kind]
    errors = None
    if request.method == "POST":
        data = spec["form"](request.POST)
        action = request.POST.get(forms.ACTION_FIELD, "")
        if action:
            data = forms.apply_action(data, action, spec["new_item"])
        else:
            try:
                saved = _save(request, project, kind, data, instance)
            except forms.REFUSALS as error:
                errors = forms.FieldErrors.of(forms.refusal(error))
            else:
                return redirect(spec["detail"], config_id=saved.id)
    else:
        data = initial
    live = _live(request, project, kind, data, instance)
    if isinstance(live, forms.FieldErrors):
        live_errors, live = live, None
    else:
        live_errors = None
    context = _context(request, project, kind, data, instance, errors=errors, live=live)
    context["live_errors"] = errors or live_errors
    return render(request, spec["part"] if is_htmx(request) else spec["page"], context)


def _copy_of(request, project, kind: str) -> dict | None:
    copy_of = request.GET.get("from", "")
    if not copy_of.isdigit():
        return None
    original = object_for_user(KINDS[kind]["model"], request.user, int(copy_of))
    if original.project_id != project.id:
        return None
    return {**data_of(original), "name": f"{original.name} copy"}


def feature_config_new(request, project_id: int):
    """A new feature config; ``?dataset=<id>`` binds it, ``?from=<id>`` starts from a copy of another."""
    project = project_for_user(request.user, project_id)
    first = project.datasets.first()
    dataset_id = request.GET.get("dataset") or (first.id if first else None)
    initial = _copy_of(request, project, "feature") or {"dataset_id": dataset_id, "config": NEW_FEATURE_CONFIG}
    return _form_page(request, project, "feature", None, initial)


def feature_config_edit(request, config_id: int):
    fc = object_for_user(FeatureConfig, request.user, config_id)
    return _form_page(request, fc.project, "feature", fc, data_of(fc))


def model_config_new(request, project_id: int):
    """A new model config; ``?from=<id>`` starts from a copy of another."""
    project = project_for_user(request.user, project_id)
    first = project.feature_configs.first()
    initial = _copy_of(request, project, "model") or {
        "feature_config_id": first.id if first else None,
        "config": NEW_MODEL_CONFIG,
    }
    return _form_page(request, project, "model", None, initial)


def model_config_edit(request, config_id: int):
    mc = object_for_user(ModelConfig, request.user, config_id)
    return _form_page(request, mc.project, "model", mc, data_of(mc))


def _live_view(request, project_id: int, kind: str):
    project = project_for_user(request.user, project_id)
    data = KINDS[kind]["form"](request.POST)
    instance = None
    if request.POST.get("_instance", "").isdigit():
        instance = object_for_user(KINDS[kind]["model"], request.user, int(request.POST["_instance"]))
    live = _live(request, project, kind, data, instance)
    context = _context(request, project, kind, data, instance)
    if isinstance(live, forms.FieldErrors):
        context["live_errors"] = live
    else:
        context["live"] = live
    return render(request, KINDS[kind]["live"], context)


@require_POST
def feature_config_live(request, project_id: int):
    """The tensor breakdown of the form as it stands, or why it cannot be saved."""
    return _live_view(request, project_id, "feature")


@require_POST
def model_config_live(request, project_id: int):
    """The parameter counts of the form as it stands, or why it cannot be saved."""
    return _live_view(request, project_id, "model")


@require_POST
def config_delete(request, kind: str, config_id: int):
    """Delete a config after the page's confirmation (refused, with the reason, while something uses it)."""
    instance = object_for_user(KINDS[kind]["model"], request.user, config_id)
    try:
        with transaction.atomic(), audit.recording(request, audit.Action.DELETE, instance):
            services.delete_config(instance)
    except forms.REFUSALS as error:
        messages.error(request, f"Not deleted: {forms.refusal(error).message}")
        return redirect(KINDS[kind]["detail"], config_id=config_id)
    messages.success(request, f"Deleted '{instance.name}'")
    return redirect("project", project_id=instance.project_id)
