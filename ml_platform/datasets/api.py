from datetime import datetime

from django.db import transaction
from ninja import File, Router, Schema, Status
from ninja.files import UploadedFile
from pydantic import Field

from ml_platform.audit import services as audit
from ml_platform.core.fields import BlankIfNull, NotNull, omittable
from ml_platform.datasets import services
from ml_platform.datasets.models import Dataset, Upload
from ml_platform.projects.access import object_for_user, project_for_user
from ml_pipeline.config.dataset import ColumnMapping, Filters

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


class DatasetOut(Schema):
    id: int
    project_id: int
    name: str
    description: str
    source: dict
    mapping: dict
    filters: dict
    summary: str | None
    preview: dict | None
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


@router.post("/projects/{project_id}/uploads/", response={201: UploadOut})
def upload_file(request, project_id: int, file: File[UploadedFile]):
    project = project_for_user(request.user, project_id)
    upload = services.store_upload(project, request.user, file)
    audit.record(request, audit.Action.UPLOAD, upload, changes={"name": upload.original_name,
                                                                "size_bytes": upload.size_bytes})
    return Status(201, upload)


@router.get("/projects/{project_id}/uploads/", response=list[UploadOut])
def list_uploads(request, project_id: int):
    return Upload.objects.filter(project=project_for_user(request.user, project_id))


@router.get("/projects/{project_id}/datasets/", response=list[DatasetOut])
def list_datasets(request, project_id: int):
    project = project_for_user(request.user, project_id)
    return [_dataset_out(d) for d in project.datasets.all()]


@router.post("/projects/{project_id}/datasets/", response={201: DatasetOut})
def create_dataset(request, project_id: int, payload: DatasetIn):
    project = project_for_user(request.user, project_id)
    data = payload.model_dump(mode="json", exclude_unset=False)
    dataset = services.create_dataset(project, request.user, **data)
    audit.record(request, audit.Action.CREATE, dataset, changes=data)
    return Status(201, _dataset_out(dataset))


@router.get("/datasets/{dataset_id}/", response=DatasetOut)
def get_dataset(request, dataset_id: int):
    return _dataset_out(object_for_user(Dataset, request.user, dataset_id))


@router.patch("/datasets/{dataset_id}/", response=DatasetOut)
def update_dataset(request, dataset_id: int, payload: DatasetPatch):
    dataset = object_for_user(Dataset, request.user, dataset_id)
    changes = payload.model_dump(mode="json", exclude_unset=True)
    dataset = services.update_dataset(dataset, changes)
    audit.record(request, audit.Action.UPDATE, dataset, changes=changes)
    return _dataset_out(dataset)


@router.delete("/datasets/{dataset_id}/", response={204: None})
def delete_dataset(request, dataset_id: int):
    dataset = object_for_user(Dataset, request.user, dataset_id)
    with transaction.atomic(), audit.recording(request, audit.Action.DELETE, dataset):
        dataset.delete()
    return Status(204, None)


@router.get("/datasets/{dataset_id}/preview/", response=dict)
def get_preview(request, dataset_id: int):
    """The stored preview (computed on create and on every data change)."""
    dataset = object_for_user(Dataset, request.user, dataset_id)
    if dataset.previewed_at is None:
        services.refresh_preview(dataset)
    return {"preview": dataset.preview, "error": dataset.preview_error, "previewed_at": dataset.previewed_at}


@router.post("/datasets/{dataset_id}/preview/", response=dict)
def refresh_preview(request, dataset_id: int):
    """Recompute the preview from the source as it is now."""
    dataset = services.refresh_preview(object_for_user(Dataset, request.user, dataset_id))
    audit.record(request, audit.Action.REFRESH, dataset)
    return {"preview": dataset.preview, "error": dataset.preview_error, "previewed_at": dataset.previewed_at}
