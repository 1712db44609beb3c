from datetime import datetime
from typing import Any

from django.db import transaction
from ninja import File, Router, Schema, Status
from ninja.files import UploadedFile
from pydantic import Field

from ml_pipeline.config.dataset import ColumnMapping, Filters
from ml_platform.audit import services as audit
from ml_platform.core.errors import refusals
from ml_platform.core.fields import BlankIfNull, NotNull, omittable
from ml_platform.datasets import services
from ml_platform.datasets.models import Dataset, Upload
from ml_platform.projects.access import object_for_user, project_for_user

router = Router(tags=["datasets"])


class UploadOut(Schema):
    id: int
    original_name: str
    size_bytes: int
    columns: list[dict]
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


class DatasetPreview(Schema):
    """What the dataset holds after mapping and filters, from one scan of the source."""

    source_rows: int
    rows: int
    dropped_rows: int = Field(description="Rows the filters (and rows missing a role column) left out")
    buyers: int
    products: int
    first_timestamp: str | None
    last_timestamp: str | None
    span_days: float | None
    summary: str = Field(description="e.g. '100K rows | 2.1K users | 350 products | 12 months'")
    columns: list[PreviewColumn]
    sample: list[dict[str, Any]] = Field(description="The first rows, as mapped")


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
def upload_file(request, project_id: int, file: File[UploadedFile]):
    project = project_for_user(request.user, project_id)
    upload = services.store_upload(project, request.user, file)
    audit.record(
        request, audit.Action.UPLOAD, upload, changes={"name": upload.original_name, "size_bytes": upload.size_bytes}
    )
    return Status(201, upload)


@router.get("/projects/{project_id}/uploads/", response={200: list[UploadOut], **refusals(404, 422)})
def list_uploads(request, project_id: int):
    return Upload.objects.filter(project=project_for_user(request.user, project_id))


@router.get("/projects/{project_id}/datasets/", response={200: list[DatasetOut], **refusals(404, 422)})
def list_datasets(request, project_id: int):
    project = project_for_user(request.user, project_id)
    return [_dataset_out(d) for d in project.datasets.all()]


@router.post("/projects/{project_id}/datasets/", response={201: DatasetOut, **refusals(400, 404, 409, 422)})
def create_dataset(request, project_id: int, payload: DatasetIn):
    project = project_for_user(request.user, project_id)
    data = payload.model_dump(mode="json", exclude_unset=False)
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
    dataset = services.update_dataset(dataset, changes)
    audit.record(request, audit.Action.UPDATE, dataset, changes=changes)
    return _dataset_out(dataset)


@router.delete("/datasets/{dataset_id}/", response={204: None, **refusals(404, 409, 422)})
def delete_dataset(request, dataset_id: int):
    dataset = object_for_user(Dataset, request.user, dataset_id)
    with transaction.atomic(), audit.recording(request, audit.Action.DELETE, dataset):
        dataset.delete()
    return Status(204, None)


@router.get("/datasets/{dataset_id}/preview/", response={200: PreviewOut, **refusals(404, 422)})
def get_preview(request, dataset_id: int):
    """The stored preview (computed on create and on every data change)."""
    dataset = object_for_user(Dataset, request.user, dataset_id)
    if dataset.previewed_at is None:
        services.refresh_preview(dataset)
    return {"preview": dataset.preview, "error": dataset.preview_error, "previewed_at": dataset.previewed_at}


@router.post("/datasets/{dataset_id}/preview/", response={200: PreviewOut, **refusals(404, 422)})
def refresh_preview(request, dataset_id: int):
    """Recompute the preview from the source as it is now."""
    dataset = services.refresh_preview(object_for_user(Dataset, request.user, dataset_id))
    audit.record(request, audit.Action.REFRESH, dataset)
    return {"preview": dataset.preview, "error": dataset.preview_error, "previewed_at": dataset.previewed_at}
