"""Reading a Transform artifact (``transform.json`` + ``vocab/*.txt``) for building models."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TRANSFORM_FILE = "transform.json"


@dataclass
class TransformArtifact:
    folder: Path
    document: dict[str, Any]
    _vocabularies: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, folder: str | Path) -> TransformArtifact:
        """From a Transform output folder (or the stage folder above it)."""
        folder = Path(folder)
        if not (folder / TRANSFORM_FILE).is_file() and (folder / "output" / TRANSFORM_FILE).is_file():
            folder = folder / "output"
        path = folder / TRANSFORM_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} holds no {TRANSFORM_FILE}: not a Transform output")
        return cls(folder, json.loads(path.read_text()))

    def tower(self, name: str) -> dict[str, Any]:
        return self.document["towers"][name]

    @property
    def target(self) -> dict[str, Any] | None:
        return self.document.get("target")

    def vocabulary(self, entry: dict[str, Any]) -> list[str]:
        """The values of a vocabulary feature, most frequent first."""
        relative = entry["vocabulary_file"]
        if relative not in self._vocabularies:
            text = (self.folder / relative).read_text(encoding="utf-8")
            # split on "\n" only: values may hold other characters str.splitlines() would break on
            self._vocabularies[relative] = text.split("\n")[:-1] if text else []
        return self._vocabularies[relative]


def apply_target_transforms(values: np.ndarray, transforms: list[dict[str, Any]]) -> np.ndarray:
    """The configured target transforms, in order, as Transform computes them (log1p clamps at 0)."""
    out = np.asarray(values, dtype=np.float64)
    for transform in transforms:
        op = transform["op"]
        if op == "log1p":
            out = np.log1p(np.maximum(out, 0.0))
        elif op == "clip":
            out = np.clip(out, transform.get("min"), transform.get("max"))
        elif op == "scale":
            out = out * float(transform["factor"])
    return out.astype(np.float32)
