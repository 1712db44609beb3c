"""The stage contract, after TFX's components: declared inputs, a config section, one run method.

A stage never decides whether it runs: the runner does, from fingerprints.
It reads its inputs' files, writes its own files into ``ctx.output`` and
returns a :class:`StageResult` (a one-line summary for people and properties
for programs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ml_pipeline.artifacts import Artifact
from ml_pipeline.reporting import Reporter
from ml_pipeline.spec import PipelineSpec


@dataclass
class StageResult:
    summary: str
    properties: dict[str, Any] = field(default_factory=dict)


class SkipStage(Exception):
    """Stop early without failing (the Pusher with an unblessed model)."""


class StageFailure(Exception):
    """A failure with a message meant for people; no traceback needed to understand it."""


@dataclass
class StageContext:
    spec: PipelineSpec
    run_id: str
    output: Path  # where the stage writes its artifact's files
    work: Path  # scratch kept across attempts of this stage in this run (checkpoints)
    inputs: dict[str, Artifact]
    reporter: Reporter
    log: logging.Logger

    def input_path(self, stage: str) -> Path:
        return self.inputs[stage].path


class Stage:
    name: ClassVar[str]
    artifact_type: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = ()
    # Bump when a stage's code changes what it writes, so old cache entries stop matching.
    version: ClassVar[int] = 1

    def config(self, spec: PipelineSpec) -> Any:
        """The part of the spec this stage's output depends on."""
        return {}

    def external_fingerprint(self, spec: PipelineSpec) -> str | None:
        """A fingerprint of what the stage reads from outside the pipeline (source data)."""
        return None

    def run(self, ctx: StageContext) -> StageResult:
        raise NotImplementedError(f"{type(self).__name__} must implement run()")  # abstract
