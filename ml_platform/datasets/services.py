"""Datasets: validating sources and mappings, uploads, and the DuckDB preview."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Literal

import duckdb
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from pydantic import Field, TypeAdapter, ValidationError

from ml_pipeline.config.dataset import BigQuerySource, CsvOptions, DatasetConfig, FileSource, SqlSource, StrictModel
from ml_pipeline.data import sources
from ml_pipeline.data.access import check_database_url, check_file
from ml_pipeline.data.bigquery import BigQueryRows
from ml_pipeline.data.files import HEADER_ONLY, NO_ROWS, readable_error
from ml_pipeline.data.preview import preview as preview_rows
from ml_pipeline.errors import (
    UNION_TAGS,
    ConfigError,
    DataError,
    Problem,
    problems_from_validation_error,
    validate_model,
)
from ml_pipeline.redact import MASK, redact
from ml_platform.core import clock, usage
from ml_platform.core.errors import Conflict, Invalid, shown_problems
from ml_platform.datasets.access import data_access_for
from ml_platform.datasets.models import Dataset, Upload

UPLOAD_SUFFIXES = (".csv", ".parquet")


class UploadSource(StrictModel):
    """A file uploaded into the project (see the uploads endpoint)."""

    kind: Literal["upload"] = "upload"
    upload_id: int
    csv: CsvOptions = Field(
        default_factory=CsvOptions,
        description="How the CSV file is read: what is left at its default is as it was read when uploaded",
    )


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
        parsed = FileSource(
            path=upload.file.path,
            format=Path(upload.file.name).suffix.lstrip(".") or "auto",
            csv=CsvOptions.model_validate({**upload.csv_options, **parsed.csv.model_dump(exclude_defaults=True)}),
        )
    elif isinstance(parsed, FileSource):
        _check_readable_by(project, parsed, "source.path")
    elif isinstance(parsed, SqlSource):
        _check_readable_by(project, parsed, "source.database")
    return validate_model(DatasetConfig, {"source": parsed.model_dump(), "mapping": mapping, "filters": filters or {}})


def dataset_config(dataset: Dataset) -> DatasetConfig:
    return resolve_config(dataset.project, dataset.source, dataset.mapping, dataset.filters)


UPLOAD_GONE = "the uploaded file is no longer on the server: upload it again"


def _about_the_source(error: ConfigError | DataError, source: dict) -> ConfigError | DataError:
    """An upload's problems named by the fields the user sent: its file is ``source.upload_id``, not a path."""
    if source.get("kind") != "upload":
        return error
    renamed = []
    for problem in error.problems:
        if problem.field == "source.path":
            gone = problem.message.endswith("does not exist")
            problem = Problem("source.upload_id", UPLOAD_GONE if gone else problem.message)
        renamed.append(problem)
    if isinstance(error, DataError):
        return DataError(renamed[0].message, field=renamed[0].field, detail=error.detail)
    return ConfigError(renamed)


def compute_preview(project, source: dict, config: DatasetConfig, run_bigquery: bool = False) -> dict | None:
    """The preview of a dataset's config; raises on unusable data. A BigQuery source's is None unless
    ``run_bigquery`` (its counts are a billed query, run only when asked: see :func:`bigquery_note`)."""
    if config.source.kind == "bigquery":
        if not run_bigquery or not settings.CLOUD_PROJECT_ID:
            return None
        return BigQueryRows.open(config).preview()
    try:
        return preview_rows(config, access=data_access_for(project))
    except (ConfigError, DataError) as error:
        raise _about_the_source(error, source) from None


BIGQUERY_PREVIEW = "BigQuery sources are previewed on Google Cloud, not locally"


def bigquery_note(config: DatasetConfig) -> str:
    """What is shown instead of a BigQuery source's preview until it is run: the bytes its query would scan
    (a dry run: free), where the platform runs on Google Cloud (CLOUD_PROJECT_ID set)."""
    if not settings.CLOUD_PROJECT_ID:
        return BIGQUERY_PREVIEW
    try:
        estimate = BigQueryRows.open(config).estimate()
    except (ConfigError, DataError) as error:
        return "; ".join(str(p) for p in shown_problems(error)) if isinstance(error, DataError) else str(error)
    return f"{estimate['summary']}{TO_RUN_IT}"


TO_RUN_IT = ": refresh the preview to run it"


def is_bigquery_note(text: str) -> bool:
    """Whether a preview error is :func:`bigquery_note`'s note rather than a failure."""
    return text == BIGQUERY_PREVIEW or text.endswith(TO_RUN_IT)


def refresh_preview(dataset: Dataset, run_bigquery: bool = True) -> Dataset:
    """Recompute and store the preview; a failure is stored as the preview error (as a user is shown it).
    A BigQuery source's counts are run only with ``run_bigquery`` (an explicit refresh), else estimated."""
    config = dataset_config(dataset)  # a source the project may no longer read is refused, not stored
    try:
        dataset.preview = compute_preview(dataset.project, dataset.source, config, run_bigquery=run_bigquery)
        dataset.preview_error = bigquery_note(config) if dataset.preview is None else ""
    except ConfigError as error:
        dataset.preview, dataset.preview_error = None, str(error)
    except DataError as error:
        dataset.preview, dataset.preview_error = None, "; ".join(str(p) for p in shown_problems(error))
    dataset.previewed_at = clock.now()
    dataset.save(update_fields=["preview", "preview_error", "previewed_at", "updated_at"])
    return dataset


def _check_name_free(project, name: str, exclude_id: int | None = None) -> None:
    taken = Dataset.objects.filter(project=project, name=name).exclude(pk=exclude_id).exists()
    if taken:
        raise Conflict("Name taken", [Problem("name", f"a dataset named '{name}' already exists in this project")])


def _stored(config: DatasetConfig) -> dict:
    """The mapping and filters as stored: what was set, defaults left out."""
    return {
        "mapping": config.mapping.model_dump(exclude_defaults=True),
        "filters": config.filters.model_dump(mode="json", exclude_defaults=True),
    }


def draft_dataset(project, user, *, name: str, description: str, source: dict, mapping: dict, filters: dict) -> Dataset:
    """The dataset :func:`create_dataset` would store, checked (name, source, mapping, filters, the data
    itself) and previewed, but not saved: what a page's live panel shows while the form is filled in."""
    _check_name_free(project, name)
    config = resolve_config(project, source, mapping, filters)
    preview = compute_preview(project, source, config)
    return Dataset(
        project=project,
        name=name,
        description=description,
        source=source,
        **_stored(config),
        preview=preview,
        preview_error=bigquery_note(config) if preview is None else "",
        previewed_at=clock.now(),
        created_by=user,
    )


@transaction.atomic
def create_dataset(
    project, user, *, name: str, description: str, source: dict, mapping: dict, filters: dict
) -> Dataset:
    """Everything is checked first (:func:`draft_dataset`): a refusal writes nothing."""
    dataset = draft_dataset(
        project, user, name=name, description=description, source=source, mapping=mapping, filters=filters
    )
    dataset.save()
    return dataset


def draft_update(dataset: Dataset, changes: dict) -> Dataset:
    """A copy of ``dataset`` with ``changes``, checked and (when its data changed) previewed, not saved."""
    draft = copy.copy(dataset)
    if "name" in changes:
        _check_name_free(dataset.project, changes["name"], exclude_id=dataset.pk)
    if "source" in changes:
        changes = {**changes, "source": _keep_stored_password(dataset.source, changes["source"])}
    merged = {key: changes.get(key, getattr(dataset, key)) for key in ("source", "mapping", "filters")}
    config = resolve_config(dataset.project, **merged)
    if any(key in changes for key in ("source", "mapping", "filters")):
        draft.preview = compute_preview(dataset.project, merged["source"], config)
        draft.preview_error = bigquery_note(config) if draft.preview is None else ""
        draft.previewed_at = clock.now()
    for key in ("name", "description"):
        if key in changes:
            setattr(draft, key, changes[key])
    draft.source = merged["source"]
    for key, value in _stored(config).items():
        setattr(draft, key, value)
    return draft


@transaction.atomic
def update_dataset(dataset: Dataset, changes: dict) -> Dataset:
    """Like create: the changed dataset is checked and previewed (:func:`draft_update`) before anything is saved."""
    updated = draft_update(dataset, changes)
    updated.save()
    return updated


def delete_dataset(dataset: Dataset) -> None:
    """Refused (Conflict, with the reason) while a feature config, a schedule or a training run uses it."""
    usage.refuse_while_used(
        usage.named("feature config", dataset.feature_configs.order_by("name"))
        + usage.named("training schedule", dataset.training_schedules.order_by("name"))
        + usage.runs_using(dataset.training_runs.all())
    )
    dataset.delete()


def _keep_stored_password(stored: dict, sent: dict) -> dict:
    """A source sent back as the API showed it (password masked) keeps the stored password."""
    database = sent.get("database")
    if isinstance(database, str) and MASK in database and redact(stored.get("database")) == database:
        return {**sent, "database": stored["database"]}
    return sent


def presented_source(dataset: Dataset) -> dict:
    """The source as answers and pages show it: a database password is never echoed."""
    return redact(dataset.source)


_UPLOAD_FIELDS = {"source.path": "file", "source.csv.encoding": "encoding", "source.csv.delimiter": "delimiter"}


def store_upload(project, user, uploaded: UploadedFile, options: CsvOptions | None = None) -> Upload:
    """Save an uploaded CSV/Parquet file after checking DuckDB can read it, as ``options`` say, into rows.

    Refused, with nothing kept: an empty file, a header without rows, a file that is not CSV or Parquet,
    not in the encoding chosen, or whose delimiter cannot be found.
    """
    options = options or CsvOptions()
    suffix = Path(uploaded.name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise Invalid(Problem("file", f"'{uploaded.name}' is not a .csv or .parquet file"), "Unsupported file")
    with transaction.atomic():
        upload = Upload(
            project=project,
            original_name=uploaded.name,
            size_bytes=uploaded.size,
            uploaded_by=user,
            csv_options=options.model_dump(exclude_defaults=True),
        )
        upload.file.save(Path(uploaded.name).name, uploaded, save=False)
        try:
            upload.columns = _read_upload(project, upload.file.path, suffix.lstrip("."), options)
        except DataError as error:
            upload.file.delete(save=False)
            problem = shown_problems(error)[0]
            field = _UPLOAD_FIELDS.get(problem.field, "file")
            raise Invalid(Problem(field, problem.message), "Unreadable file") from None
        except BaseException:
            upload.file.delete(save=False)
            raise
        upload.save()
    return upload


def _read_upload(project, path: str, fmt: str, options: CsvOptions) -> list[dict]:
    """The columns of an uploaded file ([{name, type}]); DataError when it holds no rows or cannot be read."""
    con = sources.connect()
    try:
        sources.register_source(con, FileSource(path=path, format=fmt, csv=options), access=data_access_for(project))
        columns = [{"name": n, "type": t} for n, t in sources.source_columns(con).items()]
        try:
            has_rows = con.execute("SELECT 1 FROM source_rows LIMIT 1").fetchone() is not None
        except duckdb.Error as error:
            raise readable_error(error, "source.path") from None
    finally:
        con.close()
    if not has_rows:
        raise DataError(HEADER_ONLY if fmt == "csv" else NO_ROWS, field="source.path")
    return columns
