"""The stage contract, after TFX's component specs: declared inputs, one output, parameters, one run method.

A stage declares

* ``inputs``: the stages it reads, each with the artifact type it reads it as
  (:mod:`ml_pipeline.artifact_types`);
* ``output``: the artifact type it writes, whose ``FILES`` name the files (the
  runner refuses a run that left a required one out);
* ``Params``: a small pydantic model built from the spec by :meth:`Stage.params`.
  It is both the stage's cache key (its fingerprint covers ``Params``' JSON,
  the inputs' fingerprints, the code ``version`` and what
  :meth:`Stage.external_fingerprint` reads from outside) and what :meth:`Stage.run`
  receives: a stage never sees the spec, so it cannot read what its key ignores.

A stage never decides whether it runs: the runner does, from fingerprints. It
reads its inputs through their types, writes its files into ``ctx.output`` and
returns a :class:`StageResult` (a one-line summary for people and properties
for programs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from ml_pipeline.artifact_types import ArtifactType
from ml_pipeline.data.access import DataAccess
from ml_pipeline.reporting import Reporter
from ml_pipeline.spec import PipelineSpec

A = TypeVar("A", bound=ArtifactType)
P = TypeVar("P", bound=BaseModel)


class StageParams(BaseModel):
    """Base of a stage's ``Params``: frozen, and no key the stage does not declare."""

    model_config = ConfigDict(frozen=True, extra="forbid")


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
    """Where a stage run reads and writes, and whom it tells."""

    run_id: str
    # Local folders, whatever the artifact root (a non-local root is staged through a local temp dir: see
    # ml_pipeline.runner._Workspace), except final_output, which is a URL on a non-local root.
    output: Path  # where the stage writes its files (``output.partial`` until the stage has succeeded)
    final_output: Path | str  # where those files are once it has: the place to record, never to write
    work: Path  # scratch kept across attempts of this stage in this run (checkpoints)
    inputs: dict[str, ArtifactType]  # producing stage -> its artifact, read as the type this stage declares
    reporter: Reporter
    log: logging.Logger
    data_access: DataAccess | None = None  # what a source may be read from (None: anywhere, as in the CLI)

    def input(self, kind: type[A]) -> A:
        """The input read as ``kind`` (a stage reads at most one input of each type)."""
        found = [artifact for artifact in self.inputs.values() if isinstance(artifact, kind)]
        if len(found) != 1:
            raise StageFailure(f"expected one {kind.TYPE_NAME} input, found {len(found)}")
        return found[0]


class Stage(Generic[P]):
    name: ClassVar[str]
    inputs: ClassVar[dict[str, type[ArtifactType]]] = {}
    output: ClassVar[type[ArtifactType]]
    Params: ClassVar[type[BaseModel]] = StageParams  # no parameters
    # Bump when a stage's code changes what it writes, so old cache entries stop matching.
    version: ClassVar[int] = 1

    def params(self, spec: PipelineSpec) -> P:
        """The part of the spec this stage's output depends on (default: ``Params`` with its defaults)."""
        return self.Params()  # type: ignore[return-value]

    def external_fingerprint(self, params: P, access: DataAccess | None) -> str | None:
        """A fingerprint of what the stage reads from outside the pipeline (source data, a baseline model)."""
        return None

    def run(self, ctx: StageContext, params: P) -> StageResult:
        raise NotImplementedError(f"{type(self).__name__} must implement run()")  # abstract
