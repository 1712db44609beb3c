"""The data a project's sources may read, built from the settings.

Every project may read its own uploads and the folders an administrator
listed in ``DATASET_ALLOWED_ROOTS`` (readable by every project, as the
README says). Nothing the platform keeps for itself is readable, even when
an allowed folder contains it: the data folder (the database, sessions,
secrets, other projects' uploads), MLflow's store, the pipeline and serving
folders, and the platform's own PostgreSQL databases.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection

from ml_pipeline.data.access import DataAccess, postgres_target

SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def upload_folder(project_id: int) -> Path:
    """Where a project's uploads are stored (see ``datasets.models.upload_path``)."""
    return Path(settings.MEDIA_ROOT) / "uploads" / f"project-{project_id}"


def _local_path(uri: str) -> str | None:
    """The local file or folder behind a path, ``file://`` or ``sqlite:///`` URI; None for remote stores."""
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return parts.path if parts.scheme else uri
    if parts.scheme.startswith("sqlite"):
        return parts.path[1:] if parts.path.startswith("//") else parts.path  # sqlite:////abs and sqlite:///abs
    return None


def _platform_paths() -> list[str]:
    paths = [
        settings.DATA_DIR,
        settings.MEDIA_ROOT,
        settings.PIPELINE_ROOT,
        settings.SERVING_DIR,
        settings.MLFLOW_TRACKING_URI,
        settings.MLFLOW_ARTIFACT_ROOT,
    ]
    if connection.vendor == "sqlite":
        paths += [f"{settings.DATABASES['default']['NAME']}{suffix}" for suffix in SQLITE_COMPANIONS]
    local = [_local_path(str(p)) for p in paths]
    found = [p for p in local if p]
    for tracking in [p for p in found if p == _local_path(settings.MLFLOW_TRACKING_URI)]:
        found += [f"{tracking}{suffix}" for suffix in SQLITE_COMPANIONS[1:]]
    return found


def _platform_databases() -> list[str]:
    urls = [settings.MLFLOW_TRACKING_URI]
    if connection.vendor == "postgresql":
        db = settings.DATABASES["default"]
        urls.append(f"postgresql:///{db['NAME']}?host={db.get('HOST') or ''}&port={db.get('PORT') or 5432}")
    return [postgres_target(url) for url in urls if url.startswith(("postgres://", "postgresql://"))]


def data_access_for(project) -> DataAccess:
    return DataAccess(
        own=[str(upload_folder(project.pk))],
        allowed=[str(Path(root).expanduser()) for root in settings.DATASET_ALLOWED_ROOTS],
        denied=_platform_paths(),
        denied_databases=_platform_databases(),
    )
