"""Runs a pipeline's stages in order, with caching, resume and per-stage logs.

Each stage's fingerprint covers its code version, its ``Params`` (the part
of the spec it reads, and all it is given), the fingerprints of the stages
it reads, and what it reads from outside (ExampleGen's source data, the
Evaluator's baseline model). Before a stage runs the runner looks, in order, for:

1. a complete output of this stage in this same run (a resumed run);
2. a complete output anywhere in the pipeline with the same fingerprint
   (the cache) whose files are all still there;

and runs the stage only when neither exists, or when asked to recompute
from that stage on (``from_stage``). :meth:`PipelineRunner.plan` answers the
same questions without running anything.
"""

from __future__ import annotations

import logging
import tempfile
import time
import traceback as tb
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ml_pipeline.artifacts import Artifact, ArtifactStore, fingerprint
from ml_pipeline.errors import ConfigError, DataError
from ml_pipeline.redact import redact
from ml_pipeline.reporting import Reporter
from ml_pipeline.spec import STAGES, PipelineSpec, StageStatus
from ml_pipeline.stages.base import SkipStage, Stage, StageContext, StageFailure


@dataclass
class PlanStep:
    stage: str
    action: str  # "run", "reuse" or "skip"
    reason: str
    fingerprint: str


@dataclass
class RunResult:
    run_id: str
    status: StageStatus  # how the run ended: COMPLETED or FAILED
    artifacts: dict[str, Artifact]
    stages: dict[str, dict[str, Any]]
    error: dict[str, str] | None = None

    @property
    def blessed(self) -> bool | None:
        evaluation = self.artifacts.get("Evaluator")
        return None if evaluation is None else bool(evaluation.properties.get("blessed"))


class _ReporterLogHandler(logging.Handler):
    """Forwards a stage's log records to the reporter as log events."""

    def __init__(self, reporter: Reporter, stage: str) -> None:
        super().__init__(level=logging.INFO)
        self.reporter, self.stage = reporter, stage

    def emit(self, record: logging.LogRecord) -> None:
        self.reporter.log(self.stage, record.levelname, record.getMessage())


class _Workspace:
    """Where one attempt of a stage reads and writes.

    On a local root that is the stage's own folder (``output.partial``, ``work``, ``stage.log``), as ever.
    On any other fsspec root (gs://, memory://) the stages still get local paths, because the libraries
    they hand them to (DuckDB's COPY and read_parquet, Keras' save, TensorFlow's SavedModel, pyarrow) write
    and read local files: the attempt runs in a local temp dir with its inputs fetched there and its
    ``work`` (the Trainer's checkpoints) restored from the root; :meth:`publish` uploads what it wrote into
    the root's ``output.partial`` before the store commits it, and the log and ``work`` are uploaded when
    the attempt ends, however it ends. The temp dir is removed then.
    """

    def __init__(self, store: ArtifactStore, run_id: str, stage: str, inputs: dict[str, Artifact]) -> None:
        self.store, self.run_id, self.stage, self.inputs = store, run_id, stage, inputs
        self.stage_dir = store.stage_dir(run_id, stage)
        self._remote_partial = store.begin_stage(run_id, stage)
        self._scratch: tempfile.TemporaryDirectory | None = None
        if store.is_local:
            self.partial = Path(self._remote_partial)
            self.work = Path(self.stage_dir) / "work"
            self.log_path = Path(self.stage_dir) / "stage.log"
        else:
            self._scratch = tempfile.TemporaryDirectory(prefix=f"ml-pipeline-{stage}-")
            local = Path(self._scratch.name)
            self.partial, self.work, self.log_path = local / "output.partial", local / "work", local / "stage.log"
            self.partial.mkdir()
            store.download(f"{self.stage_dir}/work", self.work)
            self.inputs = {d: store.fetch(a, local / "inputs" / d) for d, a in inputs.items()}
        self.work.mkdir(exist_ok=True)

    def publish(self) -> None:
        if self._scratch is not None:
            self.store.upload(self.partial, self._remote_partial)

    def __enter__(self) -> _Workspace:
        return self

    def __exit__(self, *exc) -> None:
        if self._scratch is None:
            return
        try:
            self.store.upload(self.work, f"{self.stage_dir}/work")
            if self.log_path.exists():
                self.store.put_file(self.log_path, f"{self.stage_dir}/stage.log")
        finally:
            self._scratch.cleanup()


def default_stages() -> dict[str, Stage]:
    from ml_pipeline.stages import registry

    return registry()


class PipelineRunner:
    def __init__(
        self,
        spec: PipelineSpec,
        root: str | Path,
        run_id: str | None = None,
        reporter: Reporter | None = None,
        stages: dict[str, Stage] | None = None,
    ) -> None:
        self.spec = spec
        self.store = ArtifactStore(root, spec.name)
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.reporter = reporter or Reporter()
        self.stages = stages or default_stages()
        self._fingerprints: dict[str, str] | None = None
        self._params: dict[str, BaseModel] = {}

    # -- fingerprints and plan -------------------------------------------------
    def selected_stages(self) -> list[str]:
        return [name for name in STAGES if name in self.spec.stages]

    def params(self, name: str) -> BaseModel:
        """The stage's ``Params``: what its fingerprint covers and all its run is given of the spec."""
        if name not in self._params:
            self._params[name] = self.stages[name].params(self.spec)
        return self._params[name]

    def fingerprints(self) -> dict[str, str]:
        if self._fingerprints is None:
            prints: dict[str, str] = {}
            for name in self.selected_stages():
                stage, params = self.stages[name], self.params(name)
                prints[name] = fingerprint(
                    name,
                    stage.version,
                    params.model_dump(mode="json"),
                    {dep: prints[dep] for dep in stage.inputs},
                    stage.external_fingerprint(params, self.spec.data_access),
                )
            self._fingerprints = prints
        return self._fingerprints

    def _reusable(self, name: str, stage_fingerprint: str) -> tuple[Artifact | None, str]:
        own = self.store.completed(self.run_id, name)
        if own is not None and own.fingerprint == stage_fingerprint:
            return own, "already completed in this run"
        return self.store.cached(name, stage_fingerprint)

    def plan(self, from_stage: str | None = None) -> list[PlanStep]:
        """What :meth:`run` would do for each stage, and why, without running anything."""
        steps = []
        forcing = False
        for name in self.selected_stages():
            stage_fp = self.fingerprints()[name]
            forcing = forcing or name == from_stage
            if forcing:
                # Recomputing means "not from the cache"; a resumed run still keeps what it already redid.
                own = self.store.completed(self.run_id, name)
                if own is not None and own.fingerprint == stage_fp:
                    steps.append(PlanStep(name, "reuse", "already completed in this run", stage_fp))
                else:
                    steps.append(PlanStep(name, "run", f"recompute requested from {from_stage}", stage_fp))
                continue
            artifact, reason = self._reusable(name, stage_fp)
            if artifact is None:
                steps.append(PlanStep(name, "run", reason, stage_fp))
            else:
                steps.append(PlanStep(name, "reuse", reason, stage_fp))
        return steps

    # -- running ---------------------------------------------------------------
    def run(self, from_stage: str | None = None) -> RunResult:
        if from_stage is not None and from_stage not in self.selected_stages():
            raise ValueError(f"from_stage: '{from_stage}' is not one of {self.selected_stages()}")
        record: dict[str, dict[str, Any]] = {name: {"status": StageStatus.PENDING} for name in self.selected_stages()}
        artifacts: dict[str, Artifact] = {}
        plan = {step.stage: step for step in self.plan(from_stage)}
        self.store.save_run_record(self.run_id, {"spec": redact(self.spec.model_dump(mode="json")), "stages": record})
        for name in self.selected_stages():
            step = plan[name]
            if step.action == "reuse":
                artifact, reason = self._reusable(name, step.fingerprint)
                if artifact is not None:
                    artifacts[name] = artifact
                    record[name] = {
                        "status": StageStatus.CACHED,
                        "uri": artifact.uri,
                        "reason": reason,
                        "fingerprint": artifact.fingerprint,
                        "summary": artifact.summary,
                    }
                    self.reporter.stage_started(name, {"cached": True})
                    self.reporter.stage_completed(name, artifact.summary, artifact.properties, True)
                    self._save(record)
                    continue
            outcome = self._run_stage(name, step.fingerprint, artifacts, record)
            self._save(record)
            if outcome == StageStatus.FAILED:
                error = {k: record[name][k] for k in ("message", "traceback")} | {"stage": name}
                self.reporter.run_finished(StageStatus.FAILED, {"stage": name, "message": record[name]["message"]})
                return RunResult(self.run_id, StageStatus.FAILED, artifacts, record, error)
        result = RunResult(self.run_id, StageStatus.COMPLETED, artifacts, record)
        self.reporter.run_finished(StageStatus.COMPLETED, {"blessed": result.blessed})
        return result

    def run_one(self, name: str) -> StageStatus:
        """Run one stage, as a remote runner's task does (each stage its own container): reused when its
        fingerprint matches an output (this run's, or the cache's), else run on its inputs' outputs, which
        earlier tasks left in this run or in the cache. The run record then holds this stage's line."""
        if name not in self.selected_stages():
            raise ValueError(f"stage: '{name}' is not one of {self.selected_stages()}")
        prints = self.fingerprints()
        artifacts: dict[str, Artifact] = {}
        for dependency in self.stages[name].inputs:
            artifact, reason = self._reusable(dependency, prints[dependency])
            if artifact is None:
                raise StageFailure(f"{name} needs {dependency}'s output, which is missing: {reason}")
            artifacts[dependency] = artifact
        record = (self.store.load_run_record(self.run_id) or {}).get("stages") or {
            stage: {"status": StageStatus.PENDING} for stage in self.selected_stages()
        }
        artifact, reason = self._reusable(name, prints[name])
        if artifact is not None:
            record[name] = {"status": StageStatus.CACHED, "uri": artifact.uri, "reason": reason}
            self.reporter.stage_started(name, {"cached": True})
            self.reporter.stage_completed(name, artifact.summary, artifact.properties, True)
            self._save(record)
            return StageStatus.CACHED
        outcome = self._run_stage(name, prints[name], artifacts, record)
        self._save(record)
        return outcome

    def _save(self, record) -> None:
        self.store.save_run_record(self.run_id, {"spec": redact(self.spec.model_dump(mode="json")), "stages": record})

    def _run_stage(self, name: str, stage_fp: str, artifacts: dict[str, Artifact], record: dict) -> StageStatus:
        stage = self.stages[name]
        with _Workspace(self.store, self.run_id, name, {d: artifacts[d] for d in stage.inputs}) as space:
            return self._attempt(name, stage, stage_fp, space, artifacts, record)

    def _attempt(self, name, stage, stage_fp, space: _Workspace, artifacts, record) -> StageStatus:
        partial = space.partial
        log = logging.getLogger(f"ml_pipeline.stage.{name}.{self.run_id}")
        log.setLevel(logging.INFO)
        log.propagate = False
        file_handler = logging.FileHandler(space.log_path)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        reporter_handler = _ReporterLogHandler(self.reporter, name)
        log.addHandler(file_handler)
        log.addHandler(reporter_handler)
        started = time.time()
        record[name] = {"status": StageStatus.RUNNING, "started_at": started, "fingerprint": stage_fp}
        self._save(record)
        self.reporter.stage_started(name, {"cached": False, "fingerprint": stage_fp})
        ctx = StageContext(
            self.run_id,
            partial,
            self.store.output_dir(self.run_id, name),
            space.work,
            {d: kind.of(space.inputs[d]) for d, kind in stage.inputs.items()},
            self.reporter,
            log,
            self.spec.data_access,
        )
        try:
            result = stage.run(ctx, self.params(name))
            missing = stage.output.missing_files(partial)
            if missing:
                raise StageFailure(f"{name} did not write its {stage.output.TYPE_NAME} artifact's {', '.join(missing)}")
        except SkipStage as skip:
            self.store.abandon_stage(self.run_id, name)
            log.info("skipped: %s", skip)
            record[name] = {
                "status": StageStatus.SKIPPED,
                "reason": str(skip),
                "started_at": started,
                "ended_at": time.time(),
            }
            self.reporter.stage_skipped(name, str(skip))
            return StageStatus.SKIPPED
        except (ConfigError, DataError, StageFailure) as error:
            return self._fail(name, str(error), tb.format_exc(), started, record, log)
        except Exception as error:  # anything else is a bug or an environment problem: keep the traceback
            return self._fail(name, f"{type(error).__name__}: {error}", tb.format_exc(), started, record, log)
        finally:
            log.removeHandler(file_handler)
            log.removeHandler(reporter_handler)
            file_handler.close()
        space.publish()
        ended = time.time()
        artifact = self.store.commit_stage(
            Artifact(
                stage=name,
                type=stage.output.TYPE_NAME,
                uri=str(space.stage_dir),
                fingerprint=stage_fp,
                run_id=self.run_id,
                input_fingerprints={d: artifacts[d].fingerprint for d in stage.inputs},
                properties=result.properties,
                summary=result.summary,
                duration_s=round(ended - started, 3),
            )
        )
        artifacts[name] = artifact
        record[name] = {
            "status": StageStatus.COMPLETED,
            "uri": artifact.uri,
            "summary": result.summary,
            "fingerprint": stage_fp,
            "started_at": started,
            "ended_at": ended,
        }
        self.reporter.stage_completed(name, result.summary, result.properties, False)
        return StageStatus.COMPLETED

    def _fail(self, name, message, traceback, started, record, log) -> StageStatus:
        log.error("%s\n%s", message, traceback)
        self.store.abandon_stage(self.run_id, name)
        record[name] = {
            "status": StageStatus.FAILED,
            "message": message,
            "traceback": traceback,
            "started_at": started,
            "ended_at": time.time(),
        }
        self.reporter.stage_failed(name, message, traceback)
        return StageStatus.FAILED
