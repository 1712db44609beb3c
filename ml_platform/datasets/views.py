from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods

from ml_platform.audit import services as audit
from ml_platform.core.partials import is_htmx
from ml_platform.datasets import services
from ml_platform.datasets.models import Dataset
from ml_platform.datasets.services import presented_source
from ml_platform.projects.access import object_for_user

KPIS = [
    ("Rows", "rows"),
    ("Buyers", "buyers"),
    ("Products", "products"),
    ("Dropped by filters", "dropped_rows"),
    ("From", "first_timestamp"),
    ("To", "last_timestamp"),
]


def dataset_detail(request, dataset_id: int):
    dataset = object_for_user(Dataset, request.user, dataset_id)
    return render(
        request,
        "datasets/detail.html",
        {
            **preview_context(dataset),
            "project": dataset.project,
            "source": presented_source(dataset),
            "history": audit.history(dataset),
            "delete_url": reverse("dataset-delete", args=[dataset.id]),
        },
    )


@require_http_methods(["GET", "POST"])
def dataset_preview(request, dataset_id: int):
    """The preview card alone, for htmx to swap in: as it is stored (GET), or recomputed from the source (POST).

    Without htmx (no script) the refresh form posts here too, and the answer is the dataset page again.
    """
    dataset = object_for_user(Dataset, request.user, dataset_id)
    if request.method == "POST":
        dataset = services.refresh_preview(dataset)
        audit.record(request, audit.Action.REFRESH, dataset)
    if is_htmx(request):
        response = render(request, "datasets/_preview.html", preview_context(dataset))
    else:
        response = redirect(reverse("dataset", args=[dataset.id]) + "#preview")
    patch_vary_headers(response, ["HX-Request"])  # one URL, two answers: no cache may give one for the other
    return response


def preview_context(dataset: Dataset) -> dict:
    """What datasets/_preview.html shows: the summary (or why there is none), the counts and the sample."""
    preview = dataset.preview or {}
    columns = preview.get("columns", [])
    return {
        "dataset": dataset,
        "summary": preview.get("summary") or dataset.preview_error,
        "failed": not preview and bool(dataset.preview_error) and not services.is_bigquery_note(dataset.preview_error),
        "scanned": (preview.get("bytes_estimate") or {}).get("summary"),  # a BigQuery source's dry-run estimate
        "kpis": [(label, key, _kpi_text(preview.get(key))) for label, key in KPIS],
        "columns": [f"{c['name']} ({c['type'].lower()})" for c in columns],
        "sample": [[_cell_text(row.get(c["name"])) for c in columns] for row in preview.get("sample", [])],
    }


def _kpi_text(value) -> str:
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _cell_text(value) -> str:
    """A sample value as its JSON spelling (2 for 2.0, true, empty for null), as it always showed."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
