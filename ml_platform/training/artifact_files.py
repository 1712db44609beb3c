"""A run's files wherever the artifact store keeps them: a local folder or any fsspec URL (``gs://`` in
production), so the pages that read run records, logs, statistics and schemas make no local-path assumption.

:class:`StoredFile` is the small part of ``pathlib.Path`` those pages use (``/``, ``name``, ``parent``,
``is_file``, ``read_text``, ``open``...) over the store's filesystem; :func:`run_files` is a run's folder in
:class:`ml_pipeline.artifacts.ArtifactStore` under ``PIPELINE_ROOT``, :func:`stored` an artifact's recorded
``uri`` (a path for a local root, a URL otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import fsspec
from django.conf import settings
from fsspec.spec import AbstractFileSystem

from ml_pipeline.artifacts import ArtifactStore, is_local_root

TAIL_BLOCK = 64 * 1024  # bytes read at a time from a log's end


@dataclass(frozen=True)
class StoredFile:
    fs: AbstractFileSystem
    path: str  # the filesystem's own path (no protocol)

    def __truediv__(self, name: str) -> StoredFile:
        return StoredFile(self.fs, f"{self.path.rstrip('/')}/{name}")

    def __str__(self) -> str:
        return self.fs.unstrip_protocol(self.path)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> StoredFile:
        return StoredFile(self.fs, self.path.rstrip("/").rsplit("/", 1)[0])

    def is_file(self) -> bool:
        return self.fs.isfile(self.path)

    def is_dir(self) -> bool:
        return self.fs.isdir(self.path)

    def size(self) -> int:
        return int(self.fs.size(self.path))

    def open(self, mode: str = "rb"):
        return self.fs.open(self.path, mode)

    def read_bytes(self) -> bytes:
        try:
            return self.fs.cat_file(self.path)
        except (IsADirectoryError, NotADirectoryError):
            raise FileNotFoundError(str(self)) from None

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def tail(self, lines: int) -> tuple[str, bool]:
        """The last ``lines`` lines, read from the end in blocks (logs can be large); and whether any were cut."""
        with self.open("rb") as handle:
            end = position = handle.seek(0, 2)
            data = b""
            while position > 0 and data.count(b"\n") <= lines:
                step = min(TAIL_BLOCK, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
        text = data.decode("utf-8", errors="replace")
        kept = text.splitlines()
        cut = position > 0 or len(kept) > lines
        return "\n".join(kept[-lines:]) + ("\n" if kept and text.endswith("\n") else ""), cut and end > 0

    def remove(self) -> None:
        if self.fs.exists(self.path):
            self.fs.rm(self.path, recursive=True)


def stored(uri: str) -> StoredFile:
    """An artifact's recorded ``uri`` (a local path or an fsspec URL) on its filesystem."""
    if is_local_root(uri):
        return StoredFile(fsspec.filesystem("file"), str(uri).removeprefix("file://"))
    fs, path = fsspec.core.url_to_fs(str(uri))
    return StoredFile(fs, path)


def run_files(run) -> StoredFile:
    """The run's folder in the artifact store (run.json, each stage's folder and log)."""
    store = ArtifactStore(settings.PIPELINE_ROOT, (run.spec or {}).get("name", ""))
    return stored(str(store.run_dir(run.pipeline_run_id)))
