"""Datasets: validating sources and mappings, uploads, and the DuckDB preview."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from pydantic import Field, TypeAdapter, ValidationError

from ml_pipeline.config.dataset import BigQuerySource, DatasetConfig, FileSource, SqlSource, StrictModel
from ml_pipeline.data import sources
from ml_pipeline.data.access import check_database_url, check_file
from ml_pipeline.data.preview import preview as compute_preview
from ml_pipeline.errors import (
    UNION_TAGS,
    ConfigError,
    DataError,
    Problem,
    problems_from_validation_error,
    validate_model,
)
from ml_pipeline.redact import MASK, redact
from ml_platform.core import clock
from ml_platform.core.errors import Conflict, Invalid
from ml_platform.datasets.access import data_access_for
from ml_platform.datasets.models import Dataset, Upload

UPLOAD_SUFFIXES = (".csv", ".parquet")


class UploadSource(StrictModel):
    """A file uploaded into the project (see the uploads endpoint)."""

    kind: Literal["upload"] = "upload"
    upload_id: int


DatasetSource = Annotated[UploadSource | FileSource | SqlSource | BigQuerySource, Field(discriminator="kind")]
UNION_TAGS.add("upload")
_source_adapter = TypeAdapter(DatasetSource)


def _check_readable_by(project, source, field: str) -> None:
    """Refuse, when the dataset is saved, a path or database the project may not read.

    The execution plane checks again when it reads (see ml_pipeline.data.access),
    so a file swapped for a symlink later is refused then too.
    """
    access = data_access_for(project)
    try:
        if isinstance(source, SqlSource) and source.engine == "postgres":
            check_database_url(access, source.database, field)
        else:
            given = source.path if isinstance(source, FileSource) else source.database
            check_file(access, given, given, field)
    except DataError as error:
        raise ConfigError(error.problems) from None


def resolve_config(project, source: dict, mapping: dict, filters: dict | None) -> DatasetConfig:
    """Validate a dataset's JSON and return the execution plane's config, uploads resolved to files."""
    try:
        parsed = _source_adapter.validate_python(source)
    except ValidationError as error:
        raise ConfigError(problems_from_validation_error(error, prefix="source")) from None
    if isinstance(parsed, UploadSource):
        upload = Upload.objects.filter(project=project, pk=parsed.upload_id).first()
        if upload is None:
            raise ConfigError(Problem("source.upload_id", f"no upload {parsed.upload_id} in this project"))
        parsed = FileSource(path=upload.file.path, format=Path(upload.file.name).suffix.lstrip(".") or "auto")
    elif isinstance(parsed, FileSource):
        _check_readable_by(project, parsed, "source.path")
    elif isinstance(parsed, SqlSource):
        _check_readable_by(project, parsed, "source.database")
    return validate_model(DatasetConfig, {"source": parsed.model_dump(), "mapping": mapping, "filters": filters or {}})


def dataset_config(dataset: Dataset) -> DatasetConfig:
    return resolve_config(dataset.project, dataset.source, dataset.mapping, dataset.filters)


def check_readable(project, config: DatasetConfig) -> None:
    """Open the source and check the mapping against its real columns (BigQuery: shape only)."""
    if config.source.kind == "bigquery":
        return
    with sources.open_rows(config, access=data_access_for(project)):
        pass


def refresh_preview(dataset: Dataset) -> Dataset:
    """Recompute and store the preview; a failure is stored as the preview error."""
    config = dataset_config(dataset)
    if config.source.kind == "bigquery":
        dataset.preview, dataset.preview_error = None, "BigQuery sources are previewed on Google Cloud, not locally"
    else:
        try:
            dataset.preview = compute_preview(config, access=data_access_for(dataset.project))
            dataset.preview_error = ""
        except (ConfigError, DataError) as error:
            dataset.preview, dataset.preview_error = None, str(error)
    dataset.previewed_at = clock.now()
    dataset.save(update_fields=["preview", "preview_error", "previewed_at", "updated_at"])
    return dataset


def _check_name_free(project, name: str, exclude_id: int | None = None) -> None:
    taken = Dataset.objects.filter(project=project, name=name).exclude(pk=exclude_id).exists()
    if taken:
        raise Conflict("Name taken", [Problem("name", f"a dataset named '{name}' already exists in this project")])


def create_dataset(
    project, user, *, name: str, description: str, source: dict, mapping: dict, filters: dict
) -> Dataset:
    _check_name_free(project, name)
    config = resolve_config(project, source, mapping, filters)
    check_readable(project, config)
    dataset = Dataset.objects.create(
        project=project,
        name=name,
        description=description,
        source=source,
        mapping=config.mapping.model_dump(exclude_defaults=True),
        filters=config.filters.model_dump(mode="json", exclude_defaults=True),
        created_by=user,
    )
    return refresh_preview(dataset)


def update_dataset(dataset: Dataset, changes: dict) -> Dataset:
    if "name" in changes:
        _check_name_free(dataset.project, changes["name"], exclude_id=dataset.pk)
    if "source" in changes:
        changes = {**changes, "source": _keep_stored_password(dataset.source, changes["source"])}
    merged = {key: changes.get(key, getattr(dataset, key)) for key in ("source", "mapping", "filters")}
    config = resolve_config(dataset.project, **merged)
    data_changed = any(key in changes for key in ("source", "mapping", "filters"))
    if data_changed:
        check_readable(dataset.project, config)
    for key in ("name", "description"):
        if key in changes:
            setattr(dataset, key, changes[key])
    dataset.source = merged["source"]
    dataset.mapping = config.mapping.model_dump(exclude_defaults=True)
    dataset.filters = config.filters.model_dump(mode="json", exclude_defaults=True)
    dataset.save()
    return refresh_preview(dataset) if data_changed else dataset


def _keep_stored_password(stored: dict, sent: dict) -> dict:
    """A source sent back as the API showed it (password masked) keeps the stored password."""
    database = sent.get("database")
    if isinstance(database, str) and MASK in database and redact(stored.get("database")) == database:
        return {**sent, "database": stored["database"]}
    return sent


def presented_source(dataset: Dataset) -> dict:
    """The source as answers and pages show it: a database password is never echoed."""
    return redact(dataset.source)


def store_upload(project, user, uploaded: UploadedFile) -> Upload:
    """Save an uploaded CSV/Parquet file after checking DuckDB can read it."""
    suffix = Path(uploaded.name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise Invalid(Problem("file", f"'{uploaded.name}' is not a .csv or .parquet file"), "Unsupported file")
    with transaction.atomic():
        upload = Upload(project=project, original_name=uploaded.name, size_bytes=uploaded.size, uploaded_by=user)
        upload.file.save(Path(uploaded.name).name, uploaded, save=False)
        try:
            con = sources.connect()
            try:
                sources.register_source(
                    con, FileSource(path=upload.file.path, format=suffix.lstrip(".")), access=data_access_for(project)
                )
                upload.columns = [{"name": n, "type": t} for n, t in sources.source_columns(con).items()]
            finally:
                con.close()
        except DataError as error:
            upload.file.delete(save=False)
            raise Invalid(Problem("file", error.problems[0].message), "Unreadable file") from None
        upload.save()
    return upload
