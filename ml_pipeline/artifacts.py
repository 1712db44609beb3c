"""Artifacts on disk: the per-run, per-stage layout, manifests and the cache index.

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
        """Folder holding the artifact's files."""
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


class ArtifactStore:
    """Reads and writes one pipeline's runs and cache index under a root folder."""

    def __init__(self, root: str | Path, pipeline_name: str) -> None:
        self.base = Path(root).expanduser().resolve() / pipeline_name
        self.base.mkdir(parents=True, exist_ok=True)

    def run_dir(self, run_id: str) -> Path:
        return self.base / "runs" / run_id

    def stage_dir(self, run_id: str, stage: str) -> Path:
        return self.run_dir(run_id) / stage

    def output_dir(self, run_id: str, stage: str) -> Path:
        """Where a stage's files are once it has succeeded (while it runs, they are in ``output.partial``)."""
        return self.stage_dir(run_id, stage) / "output"

    def begin_stage(self, run_id: str, stage: str) -> Path:
        """A clean ``output.partial`` folder for a stage attempt (the old manifest, if any, removed first)."""
        folder = self.stage_dir(run_id, stage)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(folder / "output", ignore_errors=True)
        partial = folder / "output.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        return partial

    def commit_stage(self, artifact: Artifact) -> Artifact:
        """Publish a finished stage: rename its output, then write the manifest last."""
        folder = Path(artifact.uri)
        os.replace(folder / "output.partial", folder / "output")
        artifact.files = list_files(folder / "output")
        artifact.created_at = time.time()
        write_json_atomic(folder / MANIFEST, artifact.to_dict())
        cache_entry = self.base / "cache" / artifact.stage / f"{artifact.fingerprint}.json"
        cache_entry.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cache_entry, {"uri": artifact.uri, "run_id": artifact.run_id})
        return artifact

    def abandon_stage(self, run_id: str, stage: str) -> None:
        """Remove a failed attempt's partial output (its log stays)."""
        shutil.rmtree(self.stage_dir(run_id, stage) / "output.partial", ignore_errors=True)

    def completed(self, run_id: str, stage: str) -> Artifact | None:
        artifact = Artifact.load(self.stage_dir(run_id, stage))
        return artifact if artifact and artifact.files_intact() else None

    def cached(self, stage: str, stage_fingerprint: str) -> tuple[Artifact | None, str]:
        """A reusable earlier output for this fingerprint, and why (or why not)."""
        entry = self.base / "cache" / stage / f"{stage_fingerprint}.json"
        if not entry.exists():
            return None, "no earlier output with these inputs and config"
        uri = json.loads(entry.read_text())["uri"]
        artifact = Artifact.load(Path(uri))
        if artifact is None or artifact.fingerprint != stage_fingerprint:
            return None, "the earlier output is incomplete"
        if not artifact.files_intact():
            return None, f"files of the earlier output ({artifact.run_id}) were deleted or changed"
        return artifact, f"same inputs and config as run {artifact.run_id}"

    def save_run_record(self, run_id: str, record: dict[str, Any]) -> None:
        folder = self.run_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "run.json", record)

    def load_run_record(self, run_id: str) -> dict[str, Any] | None:
        path = self.run_dir(run_id) / "run.json"
        return json.loads(path.read_text()) if path.exists() else None
