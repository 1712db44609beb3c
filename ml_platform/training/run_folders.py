"""A run's folder in the artifact store, written and removed through the store's filesystem (a local folder,
or any fsspec URL: ``gs://`` in production, ``memory://`` in tests), so nothing the control plane writes
there (the worker's log, a remote run's compiled ``pipeline.yaml``) or deletes assumes a local path.

The worker's child writes its output to an OS file; with a non-local root that file is a local spool
(``DATA_DIR/worker-logs``) copied to the store while the child runs and once more when it ends.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from ml_pipeline.artifacts import is_local_root
from ml_platform.training.artifact_files import StoredFile, run_files
from ml_platform.training.models import TrainingRun

WORKER_LOG = "worker.log"


def run_folder(run: TrainingRun) -> Path:
    """The run's folder under a local PIPELINE_ROOT (tests and the local runner write there directly)."""
    return Path(settings.PIPELINE_ROOT) / run.spec.get("name", "") / "runs" / run.pipeline_run_id


def store_is_local() -> bool:
    return is_local_root(settings.PIPELINE_ROOT)


def write_run_file(run: TrainingRun, name: str, text: str) -> StoredFile:
    """``text`` as the file ``name`` in the run's folder, written whole through the store's filesystem."""
    target = run_files(run) / name
    target.fs.makedirs(target.parent.path, exist_ok=True)
    target.fs.pipe_file(target.path, text.encode())
    return target


@contextlib.contextmanager
def local_copy(stored: StoredFile) -> Iterator[str]:
    """A local path of ``stored`` for a library that opens files itself (the kfp and aiplatform clients)."""
    protocols = stored.fs.protocol if isinstance(stored.fs.protocol, tuple) else (stored.fs.protocol,)
    if "file" in protocols:
        yield stored.path
        return
    with tempfile.TemporaryDirectory(prefix="mlp-") as folder:
        path = str(Path(folder) / stored.name)
        stored.fs.get_file(stored.path, path)
        yield path


# -- the worker's log ---------------------------------------------------------------------------------------
def worker_log_spool(run: TrainingRun) -> tuple[Path, StoredFile | None]:
    """Where the worker's child writes its output, and the store's file it is copied to (None: written in
    place, the root being local)."""
    if store_is_local():
        folder = run_folder(run)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / WORKER_LOG, None
    spool = Path(settings.DATA_DIR) / "worker-logs" / f"{run.pipeline_run_id}.log"
    spool.parent.mkdir(parents=True, exist_ok=True)
    target = run_files(run) / WORKER_LOG
    if target.is_file():  # a resumed run: its earlier attempts' output first
        spool.write_bytes(target.read_bytes())
    return spool, target


def publish_worker_log(spool: Path, target: StoredFile | None, *, last: bool = False) -> None:
    """Copy the spool to the store (a whole object each time: GCS has no append); the last copy removes it."""
    if target is None or not spool.is_file():
        return
    target.fs.makedirs(target.parent.path, exist_ok=True)
    target.fs.put_file(str(spool), target.path)
    if last:
        spool.unlink(missing_ok=True)


# -- deleting a run's files ---------------------------------------------------------------------------------
def remove_run_files(run: TrainingRun, kept: set[str]) -> None:
    """The run's folder, except the stage folders in ``kept`` (other runs reuse them)."""
    if not run.pipeline_run_id:
        return
    folder = run_files(run)
    if not folder.is_dir():
        return
    if not kept:
        folder.remove()
        return
    for entry in folder.fs.ls(folder.path, detail=False):
        if entry.rstrip("/").rsplit("/", 1)[-1] not in kept:
            folder.fs.rm(entry, recursive=True)


def stages_reused_elsewhere(run: TrainingRun) -> set[str]:
    """Stage folders of ``run`` that other runs of the same pipeline list among their artifacts (cache hits)."""
    if not run.pipeline_run_id:
        return set()
    prefixes = {str(run_files(run)) + "/"}
    if store_is_local():  # recorded as plain paths: the resolved one, and the one as configured
        prefixes |= {f"{run_files(run).path}/", f"{run_folder(run)}/"}
    others = (
        TrainingRun.objects.filter(project_id=run.project_id, spec__name=run.spec.get("name"))
        .exclude(pk=run.pk)
        .values_list("artifacts", flat=True)
    )
    kept = set()
    for artifacts in others:
        for manifest in (artifacts or {}).values():
            uri = (manifest or {}).get("uri") or ""
            for prefix in prefixes:
                if uri.startswith(prefix):
                    kept.add(uri[len(prefix) :].split("/", 1)[0])
    return kept
