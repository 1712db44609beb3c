"""The new / edit dataset page: a source, a mapping picked from its columns, filters, and the live preview.

The form's inputs are named by the API's field paths (ml_platform.core.forms); a save goes through the API's
input schema (``DatasetIn`` / ``DatasetPatch``) and the same service, and so is refused with the same
problems, each shown next to its input. The live panel asks the service for the draft it would save
(``draft_dataset`` / ``draft_update``: the same checks and preview, nothing written, no lock held).
"""

from __future__ import annotations

import hashlib
import json
import types
import typing
import uuid
from dataclasses import dataclass

from django.contrib import messages
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from pydantic import BaseModel

from ml_pipeline.config.dataset import ColumnMapping, FeatureColumn, FilterOp
from ml_pipeline.errors import Problem
from ml_platform.audit import services as audit
from ml_platform.core import forms
from ml_platform.core.partials import is_htmx
from ml_platform.datasets import columns as detected
from ml_platform.datasets import services
from ml_platform.datasets.api import DatasetIn, DatasetPatch
from ml_platform.datasets.models import Dataset, Upload
from ml_platform.datasets.uploads import delete_upload
from ml_platform.datasets.views import preview_context
from ml_platform.projects.access import object_for_user, project_for_user

LIST_FIELDS = ("filters.include_buyers", "filters.exclude_buyers", "mapping.missing_ids")
SOURCE_MODELS: dict[str, type[BaseModel]] = {
    "upload": services.UploadSource,
    "file": services.FileSource,
    "sql": services.SqlSource,
    "bigquery": services.BigQuerySource,
}
SOURCE_KINDS = [
    ("upload", "Upload a CSV or Parquet file"),
    ("file", "A file or folder on the server"),
    ("sql", "A SQL query (DuckDB, SQLite, PostgreSQL)"),
    ("bigquery", "A BigQuery table or query"),
]
LABELS = {
    "upload_id": "Uploaded file",
    "path": "File or folder path",
    "database": "Database (file path, or postgresql:// URL)",
    "project": "Google Cloud project",
    "table": "Table (dataset.table)",
}
OPS = typing.get_args(FilterOp)
DTYPES = typing.get_args(FeatureColumn.model_fields["dtype"].annotation)
ROLES = [
    ("buyer_id", "Buyer id", True),
    ("product_id", "Product id", True),
    ("timestamp", "Timestamp", False),
    ("target", "Target (a rating or quantity; optional)", False),
]
FEATURE_GROUPS = [("buyer_features", "Buyer features"), ("product_features", "Product features")]
SOURCE_PREFIX = "source:"  # inputs "source:<kind>.<field>": each kind's panel has its own, the chosen one is sent


@dataclass(frozen=True)
class Input:
    """One input of a source panel, from the source schema's field."""

    name: str  # the API's field path, e.g. source.csv.delimiter
    label: str
    widget: str  # text, textarea, number, select
    choices: tuple = ()
    help: str = ""
    group: str = ""  # the options model it belongs to ("csv"), shown folded


def _widget(annotation) -> tuple[str, tuple]:
    """The input for a schema field's type, and a select's (value, label) choices."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return "select", tuple((str(v), str(v)) for v in typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        widget, choices = _widget(args[0])
        return widget, (("", "detect"), *choices) if widget == "select" else choices
    if annotation is bool:
        return "select", (("true", "yes"), ("false", "no"))
    if annotation in (int, float):
        return "number", ()
    return "text", ()


def source_inputs(kind: str) -> list[Input]:
    """Every field of a source kind's schema as an input (a nested options model as its fields)."""
    inputs = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            if name == "kind" or (prefix == "source" and name == "upload_id"):
                continue
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}.{name}")
                continue
            widget, choices = _widget(annotation)
            if name == "query":
                widget = "textarea"
            label = LABELS.get(name, name.replace("_", " ").capitalize())
            group = prefix.split(".", 1)[1] if "." in prefix else ""
            inputs.append(Input(f"{prefix}.{name}", label, widget, choices, info.description or "", group))

    walk(SOURCE_MODELS[kind], "source")
    return inputs


def _panel(kind: str) -> tuple[str, list[Input], list[tuple[str, list[Input]]]]:
    """A source kind's inputs: its own fields, then each options model's (folded away in the page)."""
    inputs = source_inputs(kind)
    groups: dict[str, list[Input]] = {}
    for item in inputs:
        if item.group:
            groups.setdefault(item.group, []).append(item)
    return kind, [i for i in inputs if not i.group], list(groups.items())


def form_data(post) -> dict:
    """The posted form as the API's dataset JSON (the chosen source kind's fields only)."""
    data = forms.nested(_without_source(post), lists=LIST_FIELDS)
    kind = post.get("source.kind", "")
    prefix = f"{SOURCE_PREFIX}{kind}."
    source_form = {f"source.{name[len(prefix) :]}": post.getlist(name) for name in post if name.startswith(prefix)}
    source = forms.nested(_QueryLike(source_form)).get("source", {})
    data["source"] = {"kind": kind, **source} if kind else source
    for condition in forms.get(data, "filters.conditions") or []:
        value = condition.get("value")
        if condition.get("op") in ("in", "not_in") and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if value is not None:
            condition["value"] = forms.number_or_text(value)
    return data


class _QueryLike(dict):
    """A dict of name -> [values] read like a QueryDict by forms.nested."""

    def getlist(self, name):
        return self[name]


def _without_source(post):
    return _QueryLike({name: post.getlist(name) for name in post if not name.startswith(SOURCE_PREFIX)})


def data_of(dataset: Dataset) -> dict:
    """A stored dataset as the form's data (its database password masked, as the API shows it)."""
    return {
        "name": dataset.name,
        "description": dataset.description,
        "source": services.presented_source(dataset),
        "mapping": dataset.mapping,
        "filters": dataset.filters,
    }


def _columns(project, data: dict) -> tuple[list[detected.DetectedColumn] | None, forms.FieldErrors]:
    source = data.get("source") or {}
    if not source.get("kind"):
        return None, forms.FieldErrors()
    if source["kind"] == "bigquery":
        return [], forms.FieldErrors()  # not read here: its problems show next to its fields on saving
    try:
        return detected.detect(project, source), forms.FieldErrors()
    except forms.REFUSALS as error:
        return None, forms.FieldErrors.of(forms.refusal(error))


def _columns_key(columns, columns_errors) -> str:
    """What the columns step shows (the columns, or why there are none), in a few characters."""
    shown = [(c.name, c.type, c.samples) for c in columns] if columns is not None else None
    problems = [str(p) for p in columns_errors.problems] if columns_errors else []
    return hashlib.sha256(json.dumps([shown, problems]).encode()).hexdigest()[:16]


def _new_item(path: str):
    return {"column": "", "dtype": "string"} if path.endswith("_features") else {"column": "", "op": "eq"}


def live_preview(dataset: Dataset) -> dict:
    """The dataset page's preview, with what was left out line by line."""
    context = preview_context(dataset)
    preview = dataset.preview or {}
    dropped = preview.get("dropped")
    lines = []
    if isinstance(dropped, dict):
        lines = [{"reason": k, "rows": v} for k, v in dropped.items()]
    elif isinstance(dropped, list):
        lines = [d for d in dropped if isinstance(d, dict)]
    for line in lines:
        line.setdefault("text", line.get("message") or f"{line.get('rows', 0):,} rows: {line.get('reason', '')}")
    if not lines and preview.get("dropped_rows"):
        lines = [{"reason": "filters", "text": f"{preview['dropped_rows']:,} rows left out by the filters"}]
    return {**context, "dropped": lines, "warnings": preview.get("warnings") or []}


def _opened(request) -> set[str]:
    """The folded parts the user opened (``_open``, sent by editor_form.js): they stay open when re-rendered."""
    return set(request.POST.getlist("_open")) if request.method == "POST" else set()


def _context(
    project, data, *, dataset=None, errors=None, live=None, columns=None, columns_errors=None, opened=()
) -> dict:
    if columns is None and columns_errors is None:
        columns, columns_errors = _columns(project, data)
    source_kind = (data.get("source") or {}).get("kind", "upload")
    errors = errors or forms.FieldErrors()
    # A folded part of the form opens when it holds a problem or a value set away from its default, or the
    # user opened it.
    open_groups = {
        p.field.split(".")[1] for p in errors.problems if p.field.startswith("source.") and "." in p.field[7:]
    } | set(opened)
    mapping = data.get("mapping") or {}
    reading = ("timestamp_unit", "timestamp_format", "missing_ids")
    if any(f"mapping.{name}" == p.field for name in reading for p in errors.problems) or any(
        mapping.get(name) not in (None, "auto", ColumnMapping.model_fields[name].default)
        for name in reading
        if name in ColumnMapping.model_fields
    ):
        open_groups.add("reading")
    return {
        "project": project,
        "dataset": dataset,
        "data": data,
        "errors": errors,
        "open_groups": open_groups,
        "columns_key": _columns_key(columns, columns_errors),
        "columns": columns,
        "columns_errors": columns_errors or forms.FieldErrors(),
        "source_kind": source_kind,
        "source_kinds": SOURCE_KINDS,
        "source_panels": [_panel(kind) for kind, _ in SOURCE_KINDS],
        "uploads": Upload.objects.filter(project=project),
        "column_names": [c.name for c in columns or []],
        "roles": ROLES,
        "feature_groups": FEATURE_GROUPS,
        "ops": OPS,
        "dtypes": DTYPES,
        "timestamp_units": typing.get_args(ColumnMapping.model_fields["timestamp_unit"].annotation)
        if "timestamp_unit" in ColumnMapping.model_fields
        else (),
        "live": live,
        "live_url": reverse("dataset-live", args=[project.id]),
        "form_url": reverse("dataset-edit", args=[dataset.id])
        if dataset
        else reverse("dataset-new", args=[project.id]),
    }


def _fields(data: dict, dataset: Dataset | None) -> dict:
    """The form's data through the API's input schema: a new dataset's fields, or an edit's changes."""
    if dataset is None:
        return forms.checked(DatasetIn, data).model_dump(mode="json")
    sent = {**data, "filters": data.get("filters") or None, "description": data.get("description", "")}
    return forms.checked(DatasetPatch, sent).model_dump(mode="json", exclude_unset=True)


def _save(request, project, data: dict, dataset: Dataset | None) -> Dataset:
    """Create or update through the API's schema and service, audited with it, together or not at all."""
    fields = _fields(data, dataset)
    with transaction.atomic():
        if dataset is None:
            saved = services.create_dataset(project, request.user, **fields)
            audit.record(request, audit.Action.CREATE, saved, changes=fields)
        else:
            saved = services.update_dataset(dataset, fields)
            audit.record(request, audit.Action.UPDATE, saved, changes=fields)
    return saved


def _draft(request, project, data: dict, dataset: Dataset | None) -> Dataset:
    """What saving the form would store, by the same schema and service checks, written nowhere."""
    fields = _fields(data, dataset)
    if dataset is None:
        return services.draft_dataset(project, request.user, **fields)
    return services.draft_update(dataset, fields)


def _form_page(request, project, dataset: Dataset | None, initial: dict):
    errors = live = None
    if request.method == "POST":
        data = form_data(request.POST)
        action = request.POST.get(forms.ACTION_FIELD, "")
        if action:
            data = forms.apply_action(data, action, _new_item)
        else:
            try:
                saved = _save(request, project, data, dataset)
            except forms.REFUSALS as error:
                errors = forms.FieldErrors.of(forms.refusal(error))
            else:
                return redirect("dataset", dataset_id=saved.id)
    else:
        data = initial
        live = live_preview(dataset) if dataset is not None and dataset.preview else None
    template = "datasets/_form.html" if is_htmx(request) else "datasets/edit.html"
    context = _context(project, data, dataset=dataset, errors=errors, live=live, opened=_opened(request))
    return render(request, template, context)


def dataset_new(request, project_id: int):
    """A new dataset; ``?from=<id>`` starts from a copy of another (nothing is saved until the form is)."""
    project = project_for_user(request.user, project_id)
    initial: dict = {"source": {"kind": "upload"}}
    copy_of = request.GET.get("from", "")
    if copy_of.isdigit():
        original = object_for_user(Dataset, request.user, int(copy_of))
        if original.project_id == project.id:
            initial = {**data_of(original), "name": f"{original.name} copy"}
    return _form_page(request, project, None, initial)


def dataset_edit(request, dataset_id: int):
    dataset = object_for_user(Dataset, request.user, dataset_id)
    return _form_page(request, dataset.project, dataset, data_of(dataset))


@require_POST
def dataset_live(request, project_id: int):
    """The live preview of the form as it stands (the save's draft), and the columns when the source changed."""
    project = project_for_user(request.user, project_id)
    data = form_data(request.POST)
    dataset = None
    if request.POST.get("_dataset", "").isdigit():
        dataset = object_for_user(Dataset, request.user, int(request.POST["_dataset"]))
    return _live(request, project, data, dataset, with_columns=request.POST.get("_changed", "").startswith("source"))


def _live(request, project, data: dict, dataset, *, with_columns: bool, upload_panel: str = "") -> HttpResponse:
    if not data.get("name"):
        data = {**data, "name": f"preview-{uuid.uuid4().hex}"}  # a preview needs no name yet
    try:
        live = live_preview(_draft(request, project, data, dataset))
        live_errors = forms.FieldErrors()
    except forms.REFUSALS as error:
        live, live_errors = None, forms.FieldErrors.of(forms.refusal(error))
    # The columns are read again (a scan of the source) only when the source changed.
    unread = {} if with_columns else {"columns": None, "columns_errors": forms.FieldErrors()}
    context = _context(project, data, dataset=dataset, live=live, errors=live_errors, opened=_opened(request), **unread)
    context["oob"] = True
    html = render(request, "datasets/_live.html", context).content.decode()
    # The columns step is answered again only when what it shows changed: swapping it in replaces the
    # mapping the user may be picking right now with the one this request was sent with.
    if with_columns and context["columns_key"] != request.POST.get("_columns"):
        html += render(request, "datasets/_mapping.html", context).content.decode()
    return HttpResponse(upload_panel + html)


@require_POST
def upload_new(request, project_id: int):
    """Store the file chosen in the form's upload panel; answer the panel with it chosen, its columns, the preview."""
    project = project_for_user(request.user, project_id)
    data = form_data(request.POST)
    errors = forms.FieldErrors()
    file = request.FILES.get("file")
    if file is None:
        errors = forms.FieldErrors("Invalid input", [Problem("file", "choose a file to upload")])
    else:
        try:
            with transaction.atomic():
                upload = services.store_upload(project, request.user, file)
                audit.record(
                    request,
                    audit.Action.UPLOAD,
                    upload,
                    changes={"name": upload.original_name, "size_bytes": upload.size_bytes},
                )
        except forms.REFUSALS as error:
            errors = forms.FieldErrors.of(forms.refusal(error))
        else:
            data["source"] = {**(data.get("source") or {}), "kind": "upload", "upload_id": upload.id}
    if not is_htmx(request):
        if errors:
            messages.error(request, "; ".join(errors.at("file")) or errors.message)
        return redirect("dataset-new", project_id=project.id)
    context = _context(
        project, data, errors=errors, columns=[], columns_errors=forms.FieldErrors(), opened=_opened(request)
    )
    context["oob"] = True
    panel = render(request, "datasets/_upload_panel.html", context).content.decode()
    if errors:
        return HttpResponse(panel)
    return _live(request, project, data, None, with_columns=True, upload_panel=panel)


@require_POST
def upload_delete(request, upload_id: int):
    upload = object_for_user(Upload, request.user, upload_id)
    name = upload.original_name
    try:
        with transaction.atomic(), audit.recording(request, audit.Action.DELETE, upload, changes={"name": name}):
            delete_upload(upload)
    except forms.REFUSALS as error:
        messages.error(request, forms.refusal(error).message)
    else:
        messages.success(request, f"Deleted the upload '{name}'")
    return redirect(reverse("project", args=[upload.project_id]) + "#uploads")


@require_POST
def dataset_delete(request, dataset_id: int):
    """Delete after the page's confirmation; refused, with the reason, while a config or a run uses it."""
    dataset = object_for_user(Dataset, request.user, dataset_id)
    try:
        with transaction.atomic(), audit.recording(request, audit.Action.DELETE, dataset):
            services.delete_dataset(dataset)
    except forms.REFUSALS as error:
        messages.error(request, f"The dataset was not deleted: {forms.refusal(error).message}")
        return redirect("dataset", dataset_id=dataset_id)
    messages.success(request, f"Deleted the dataset '{dataset.name}'")
    return redirect("project", project_id=dataset.project_id)
