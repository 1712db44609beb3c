from datetime import datetime
from typing import Any, Literal

from django.db import transaction
from ninja import File, Form, Router, Schema, Status
from ninja.files import UploadedFile
from pydantic import Field

from ml_pipeline.config.dataset import ColumnMapping, CsvOptions, Filters
from ml_platform.audit import services as audit
from ml_platform.core.errors import refusals
from ml_platform.core.fields import BlankIfNull, NotNull, omittable
from ml_platform.datasets import services, uploads
from ml_platform.datasets.models import Dataset, Upload
from ml_platform.projects.access import object_for_user, project_for_user

router = Router(tags=["datasets"])


class UploadOut(Schema):
    id: int
    original_name: str
    size_bytes: int
    columns: list[dict]
    csv_options: CsvOptions = Field(description="How the file is read (a dataset may read it otherwise)")
    created_at: datetime


class DatasetIn(Schema):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    source: services.DatasetSource
    mapping: ColumnMapping
    filters: Filters = Filters()


class DatasetPatch(Schema):
    """Only the fields sent change; ``description`` or ``filters`` null clears them."""

    name: NotNull[str] = omittable(min_length=1, max_length=200)
    description: BlankIfNull = omittable()
    source: NotNull[services.DatasetSource] = omittable()
    mapping: NotNull[ColumnMapping] = omittable()
    filters: Filters | None = None


class PreviewColumn(Schema):
    name: str
    type: str = Field(description="DuckDB's type of the mapped column")


class DroppedRows(Schema):
    reason: Literal["no_buyer_id", "no_product_id", "no_timestamp", "filters"] = Field(
        description="The first reason each row meets, in this order"
    )
    rows: int
    message: str = Field(description="e.g. '5,078 rows without a buyer id'")


class BytesEstimate(Schema):
    bytes: int
    summary: str = Field(description="e.g. 'The preview scans 3.34 MB in BigQuery'")


class DatasetPreview(Schema):
    """What the dataset holds after mapping and filters, from one scan of the source."""

    source_rows: int
    rows: int
    dropped_rows: int = Field(description="Rows the filters (and rows missing a role column) left out")
    dropped: list[DroppedRows] = Field(default=[], description="The dropped rows by reason")
    warnings: list[str] = Field(
        default=[], description="What looks wrong: a large share without ids, one id holding a large share"
    )
    buyers: int
    products: int
    distinct: dict[str, int] = Field(
        default={}, description="Distinct values per id, text and integer column: the vocabularies it would give"
    )
    first_timestamp: str | None
    last_timestamp: str | None
    span_days: float | None
    summary: str = Field(description="e.g. '100K rows | 2.1K users | 350 products | 12 months'")
    columns: list[PreviewColumn]
    sample: list[dict[str, Any]] = Field(description="The first rows, as mapped")
    approximate: list[str] = Field(
        default=[], description="The counts that are estimates (a BigQuery source's APPROX_COUNT_DISTINCT)"
    )
    bytes_estimate: BytesEstimate | None = Field(
        default=None, description="What the preview's query scanned in BigQuery (its dry run's estimate)"
    )


class PreviewOut(Schema):
    preview: DatasetPreview | None = Field(description="Null when the source could not be read (see error)")
    error: str
    previewed_at: datetime | None


class DatasetOut(Schema):
    id: int
    project_id: int
    name: str
    description: str
    source: dict
    mapping: dict
    filters: dict
    summary: str | None
    preview: DatasetPreview | None
    preview_error: str
    previewed_at: datetime | None
    created_at: datetime
    updated_at: datetime


def _dataset_out(dataset: Dataset) -> dict:
    return {
        **{f: getattr(dataset, f) for f in DatasetOut.model_fields if hasattr(dataset, f)},
        "summary": (dataset.preview or {}).get("summary"),
        "source": services.presented_source(dataset),
    }


@router.post("/projects/{project_id}/uploads/", response={201: UploadOut, **refusals(400, 404, 422)})
def upload_file(request, project_id: int, file: File[UploadedFile], options: Form[CsvOptions]):
    """A CSV or Parquet file; refused when empty, header-only or unreadable (``encoding``, ``delimiter``,
    ``quote`` and ``header`` say how to read a CSV the sniffer gets wrong)."""
    project = project_for_user(request.user, project_id)
    upload = services.store_upload(project, request.user, file, options)
    audit.record(
        request, audit.Action.UPLOAD, upload, changes={"name": upload.original_name, "size_bytes": upload.size_bytes}
    )
    return Status(201, upload)


@router.get("/projects/{project_id}/uploads/", response={200: list[UploadOut], **refusals(404, 422)})
def list_uploads(request, project_id: int):
    return Upload.objects.filter(project=project_for_user(request.user, project_id))


@router.delete("/uploads/{upload_id}/", response={204: None, **refusals(404, 409, 422)})
def delete_upload(request, upload_id: int):
    """Delete an upload and its file; refused (409) while a dataset reads it."""
    upload = object_for_user(Upload, request.user, upload_id)
    changes = {"name": upload.original_name}
    with transaction.atomic(), audit.recording(request, audit.Action.DELETE, upload, changes=changes):
        uploads.delete_upload(upload)
    return Status(204, None)


@router.get("/projects/{project_id}/datasets/", response={200: list[DatasetOut], **refusals(404, 422)})
def list_datasets(request, project_id: int):
    project = project_for_user(request.user, project_id)
    return [_dataset_out(d) for d in project.datasets.all()]


@router.post("/projects/{project_id}/datasets/", response={201: DatasetOut, **refusals(400, 404, 409, 422)})
def create_dataset(request, project_id: int, payload: DatasetIn):
    project = project_for_user(request.user, project_id)
    data = payload.model_dump(mode="json", exclude_unset=False)
    with transaction.atomic():
        dataset = services.create_dataset(project, request.user, **data)
        audit.record(request, audit.Action.CREATE, dataset, changes=data)
    return Status(201, _dataset_out(dataset))


@router.get("/datasets/{dataset_id}/", response={200: DatasetOut, **refusals(404, 422)})
def get_dataset(request, dataset_id: int):
    return _dataset_out(object_for_user(Dataset, request.user, dataset_id))


@router.patch("/datasets/{dataset_id}/", response={200: DatasetOut, **refusals(400, 404, 409, 422)})
def update_dataset(request, dataset_id: int, payload: DatasetPatch):
    dataset = object_for_user(Dataset, request.user, dataset_id)
    changes = payload.model_dump(mode="json", exclude_unset=True)
    with transaction.atomic():
        dataset = services.update_dataset(dataset, changes)
        audit.record(request, audit.Action.UPDATE, dataset, changes=changes)
    return _dataset_out(dataset)


@router.delete("/datasets/{dataset_id}/", response={204: None, **refusals(404, 409, 422)})
def delete_dataset(request, dataset_id: int):
    """Refused (409, with the reason) while a feature config, a schedule or a training run uses it."""
    dataset = object_for_user(Dataset, request.user, dataset_id)
    with transaction.atomic(), audit.recording(request, audit.Action.DELETE, dataset):
        services.delete_dataset(dataset)
    return Status(204, None)


@router.get("/datasets/{dataset_id}/preview/", response={200: PreviewOut, **refusals(404, 422)})
def get_preview(request, dataset_id: int):
    """The stored preview (computed on create and on every data change)."""
    dataset = object_for_user(Dataset, request.user, dataset_id)
    if dataset.previewed_at is None:
        services.refresh_preview(dataset, run_bigquery=False)  # a GET runs no billed query
    return {"preview": dataset.preview, "error": dataset.preview_error, "previewed_at": dataset.previewed_at}


@router.post("/datasets/{dataset_id}/preview/", response={200: PreviewOut, **refusals(404, 422)})
def refresh_preview(request, dataset_id: int):
    """Recompute the preview from the source as it is now."""
    dataset = services.refresh_preview(object_for_user(Dataset, request.user, dataset_id))
    audit.record(request, audit.Action.REFRESH, dataset)
    return {"preview": dataset.preview, "error": dataset.preview_error, "previewed_at": dataset.previewed_at}
