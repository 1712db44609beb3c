"""Artifacts on any fsspec filesystem: the per-run, per-stage layout, manifests and the cache index.

Layout under the pipeline root::

    <root>/<pipeline name>/
        runs/<run id>/
            run.json                     what each stage did in this run
            <Stage>/
                output/                  the artifact's files
                manifest.json            written last: its presence marks the stage complete
                stage.log                the stage's log (kept even when it fails)
                work/                    scratch that survives a crash (Trainer checkpoints)
        cache/<Stage>/<fingerprint>.json points at the run folder that produced that output

A stage writes into ``output.partial/`` and only renames it to ``output/``
and writes the manifest when it has succeeded, so a failed or killed stage
never leaves anything that looks complete. A cached artifact is reused only
when every file its manifest lists is still there with the same size.

The root is a folder or an fsspec URL (``gs://bucket/prefix`` through gcsfs in production, ``memory://``
in tests). A local root is used in place, its folders returned as ``Path``; any other is reached only
through its fsspec filesystem, its folders returned as URLs, and the runner stages each stage through a
local temp dir (:mod:`ml_pipeline.runner`): the libraries the stages use (DuckDB, Keras, TensorFlow)
write local files. There, a manifest is written once, last (one object on GCS, written whole).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def fingerprint(*parts: Any) -> str:
    """A stable sha256 of JSON-serialisable parts (keys sorted)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


@dataclass
class Artifact:
    """A complete stage output, as its manifest describes it."""

    stage: str
    type: str
    uri: str  # the stage folder; files live under <uri>/output
    fingerprint: str
    run_id: str
    input_fingerprints: dict[str, str] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    files: dict[str, int] = field(default_factory=dict)
    created_at: float = 0.0
    duration_s: float = 0.0

    @property
    def path(self) -> Path:
        """Folder holding the artifact's files: a local one (on a non-local root, the runner gives a stage a
        local copy: :meth:`ArtifactStore.fetch`)."""
        return Path(self.uri) / "output"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, stage_dir: Path) -> Artifact | None:
        manifest = Path(stage_dir) / MANIFEST
        if not manifest.exists():
            return None
        return cls(**json.loads(manifest.read_text()))

    def files_intact(self) -> bool:
        """Every file the manifest lists is still there with its recorded size."""
        for relative, size in self.files.items():
            path = self.path / relative
            if not path.is_file() or path.stat().st_size != size:
                return False
        return True


def list_files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def is_local_root(root: str | Path) -> bool:
    """A folder, or a ``file://`` URL: used in place, as local paths."""
    text = str(root)
    return "://" not in text or text.startswith("file://")


class ArtifactStore:
    """Reads and writes one pipeline's runs and cache index under a root folder or fsspec URL."""

    def __init__(self, root: str | Path, pipeline_name: str) -> None:
        import fsspec

        self.is_local = is_local_root(root)
        if self.is_local:
            self.base = Path(str(root).removeprefix("file://")).expanduser().resolve() / pipeline_name
            self.base.mkdir(parents=True, exist_ok=True)
            self.fs = fsspec.filesystem("file")
            self._base = str(self.base)
        else:
            self.fs, path = fsspec.core.url_to_fs(str(root))
            self._base = f"{path.rstrip('/')}/{pipeline_name}"
            self.fs.makedirs(self._base, exist_ok=True)
            self.base = self.fs.unstrip_protocol(self._base)

    # -- where things are ----------------------------------------------------------
    def _where(self, path: str) -> Path | str:
        """A path of the filesystem as callers see it: a ``Path`` for a local root, a URL otherwise."""
        return Path(path) if self.is_local else self.fs.unstrip_protocol(path)

    def _path(self, where: str | Path) -> str:
        return str(where) if self.is_local else self.fs._strip_protocol(str(where))

    def _stage(self, run_id: str, stage: str) -> str:
        return f"{self._base}/runs/{run_id}/{stage}"

    def run_dir(self, run_id: str) -> Path | str:
        return self._where(f"{self._base}/runs/{run_id}")

    def stage_dir(self, run_id: str, stage: str) -> Path | str:
        return self._where(self._stage(run_id, stage))

    def output_dir(self, run_id: str, stage: str) -> Path | str:
        """Where a stage's files are once it has succeeded (while it runs, they are in ``output.partial``)."""
        return self._where(f"{self._stage(run_id, stage)}/output")

    # -- filesystem steps ------------------------------------------------------------
    def _remove(self, path: str) -> None:
        if self.is_local:
            shutil.rmtree(path, ignore_errors=True)
        elif self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def _write_json(self, path: str, data: Any) -> None:
        if self.is_local:
            write_json_atomic(Path(path), data)
        else:
            self.fs.pipe_file(path, json.dumps(data, indent=2, sort_keys=True, default=str).encode())

    def _read_json(self, path: str) -> Any | None:
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "rb") as handle:
            return json.loads(handle.read())

    def _files(self, folder: str) -> dict[str, int]:
        if self.is_local:
            return list_files(Path(folder)) if Path(folder).is_dir() else {}
        found = self.fs.find(folder, detail=True) if self.fs.exists(folder) else {}
        prefix = folder.rstrip("/") + "/"
        return {name[len(prefix) :]: int(info["size"]) for name, info in sorted(found.items())}

    def _load(self, stage_dir: str) -> Artifact | None:
        data = self._read_json(f"{stage_dir}/{MANIFEST}")
        return Artifact(**data) if data is not None else None

    def intact(self, artifact: Artifact) -> bool:
        """Every file the manifest lists is still there with its recorded size."""
        if self.is_local:
            return artifact.files_intact()
        present = self._files(f"{self._path(artifact.uri)}/output")
        return all(present.get(relative) == size for relative, size in artifact.files.items())

    # -- a stage's attempt --------------------------------------------------------------
    def begin_stage(self, run_id: str, stage: str) -> Path | str:
        """A clean ``output.partial`` folder for a stage attempt (the old manifest, if any, removed first)."""
        folder = self._stage(run_id, stage)
        self.fs.makedirs(folder, exist_ok=True)
        if self.fs.exists(f"{folder}/{MANIFEST}"):
            self.fs.rm(f"{folder}/{MANIFEST}")
        self._remove(f"{folder}/output")
        self._remove(f"{folder}/output.partial")
        self.fs.makedirs(f"{folder}/output.partial", exist_ok=True)
        return self._where(f"{folder}/output.partial")

    def upload(self, local: Path, where: Path | str) -> None:
        """Copy a local folder's files under ``where`` (a folder of a non-local root), replacing what was there."""
        target = self._path(where)
        self._remove(target)
        self.fs.makedirs(target, exist_ok=True)
        for file in sorted(p for p in Path(local).rglob("*") if p.is_file()):
            self.fs.put_file(str(file), f"{target}/{file.relative_to(local).as_posix()}")

    def put_file(self, local: Path, where: Path | str) -> None:
        self.fs.put_file(str(local), self._path(where))

    def download(self, where: Path | str, local: Path, files: list[str] | None = None) -> None:
        """Copy the files under ``where`` (all, or those named) into the local folder ``local``."""
        source = self._path(where)
        Path(local).mkdir(parents=True, exist_ok=True)
        for relative in files if files is not None else self._files(source):
            (Path(local) / relative).parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(f"{source}/{relative}", str(Path(local) / relative))

    def fetch(self, artifact: Artifact, local: Path) -> Artifact:
        """A local copy of a complete artifact (its listed files under ``local/output``), for a stage to read."""
        if self.is_local:
            return artifact
        self.download(f"{artifact.uri}/output", Path(local) / "output", list(artifact.files))
        return Artifact(**{**artifact.to_dict(), "uri": str(local)})

    def commit_stage(self, artifact: Artifact) -> Artifact:
        """Publish a finished stage: rename its output, then write the manifest last."""
        folder = self._path(artifact.uri)
        if self.is_local:
            os.replace(f"{folder}/output.partial", f"{folder}/output")
        else:
            self.fs.mv(f"{folder}/output.partial", f"{folder}/output", recursive=True)
        artifact.files = self._files(f"{folder}/output")
        artifact.created_at = time.time()
        self._write_json(f"{folder}/{MANIFEST}", artifact.to_dict())
        cache_entry = f"{self._base}/cache/{artifact.stage}/{artifact.fingerprint}.json"
        self.fs.makedirs(cache_entry.rsplit("/", 1)[0], exist_ok=True)
        self._write_json(cache_entry, {"uri": artifact.uri, "run_id": artifact.run_id})
        return artifact

    def abandon_stage(self, run_id: str, stage: str) -> None:
        """Remove a failed attempt's partial output (its log stays)."""
        self._remove(f"{self._stage(run_id, stage)}/output.partial")

    def completed(self, run_id: str, stage: str) -> Artifact | None:
        artifact = self._load(self._stage(run_id, stage))
        return artifact if artifact and self.intact(artifact) else None

    def cached(self, stage: str, stage_fingerprint: str) -> tuple[Artifact | None, str]:
        """A reusable earlier output for this fingerprint, and why (or why not)."""
        entry = self._read_json(f"{self._base}/cache/{stage}/{stage_fingerprint}.json")
        if entry is None:
            return None, "no earlier output with these inputs and config"
        artifact = self._load(self._path(entry["uri"]))
        if artifact is None or artifact.fingerprint != stage_fingerprint:
            return None, "the earlier output is incomplete"
        if not self.intact(artifact):
            return None, f"files of the earlier output ({artifact.run_id}) were deleted or changed"
        return artifact, f"same inputs and config as run {artifact.run_id}"

    def save_run_record(self, run_id: str, record: dict[str, Any]) -> None:
        folder = f"{self._base}/runs/{run_id}"
        self.fs.makedirs(folder, exist_ok=True)
        self._write_json(f"{folder}/run.json", record)

    def load_run_record(self, run_id: str) -> dict[str, Any] | None:
        return self._read_json(f"{self._base}/runs/{run_id}/run.json")
