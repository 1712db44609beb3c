"""Deleting an upload: refused while a dataset reads it (a dataset names its upload in its JSON source, which
no foreign key protects)."""

from __future__ import annotations

from django.db import transaction

from ml_pipeline.errors import Problem
from ml_platform.core.errors import Conflict
from ml_platform.datasets.models import Dataset, Upload


def datasets_reading(upload: Upload) -> list[Dataset]:
    return [
        d
        for d in Dataset.objects.filter(project_id=upload.project_id)
        if d.source.get("kind") == "upload" and d.source.get("upload_id") == upload.pk
    ]


def delete_upload(upload: Upload) -> None:
    """Delete the upload, and its file once the deletion is committed."""
    users = datasets_reading(upload)
    if users:
        names = ", ".join(f"'{d.name}'" for d in users)
        raise Conflict(f"Still in use by dataset {names}", [Problem("upload", f"dataset {names} reads this file")])
    with transaction.atomic():
        file = upload.file
        upload.delete()
        transaction.on_commit(lambda: file.delete(save=False))
