"""The stage contract: each stage's declared inputs, output and Params, and what the runner holds it to.

A stage is given its ``Params`` (what its fingerprint covers) and its context (where to write, its inputs,
who may be read), never the spec; the runner refuses a run that leaves out a file its output type names.
The package layout keeps each piece of knowledge in one place: no stage imports another stage's module, and
neither plane has an import cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

from ml_pipeline.artifact_types import ArtifactType, Examples
from ml_pipeline.data.access import DataAccess
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.spec import STAGES, PipelineSpec, StageStatus
from ml_pipeline.stages import registry
from ml_pipeline.stages.base import Stage, StageParams, StageResult

REPO = Path(__file__).resolve().parents[2]


def spec_for(tmp_path, **changes) -> PipelineSpec:
    csv = tmp_path / "p.csv"
    csv.write_text("customer,item\nc1,p1\n")
    return PipelineSpec.model_validate(
        {
            "name": "contract",
            "dataset": {
                "source": {"kind": "file", "path": str(csv)},
                "mapping": {"buyer_id": "customer", "product_id": "item"},
            },
            "features": {
                "buyer_tower": {"features": [{"kind": "id", "column": "buyer_id", "embedding_dim": 4}]},
                "product_tower": {"features": [{"kind": "id", "column": "product_id", "embedding_dim": 4}]},
            },
            "model": {"model_type": "retrieval"},
            "stages": ["Trainer"],
            **changes,
        }
    )


class Note(ArtifactType):
    TYPE_NAME = "Note"
    FILES = {"note": "note.txt"}


class EpochsParams(StageParams):
    epochs: int


class Recorder(Stage[EpochsParams]):
    """Stands in for the Trainer: reads one number of the spec, writes one file, remembers what it was given."""

    name = "Trainer"
    output = Note
    Params = EpochsParams

    def __init__(self) -> None:
        self.seen: list = []

    def params(self, spec: PipelineSpec) -> EpochsParams:
        return EpochsParams(epochs=spec.training.epochs)

    def run(self, ctx, params: EpochsParams) -> StageResult:
        self.seen.append((ctx, params))
        (ctx.output / "note.txt").write_text(str(params.epochs))
        return StageResult("noted")


def runner_for(tmp_path, spec, stage: Stage | None = None) -> PipelineRunner:
    return PipelineRunner(spec, tmp_path / "root", run_id="r1", stages={"Trainer": stage or Recorder()})


def test_every_stage_is_registered_in_pipeline_order_and_reads_only_earlier_stages():
    stages = registry()
    assert tuple(stages) == STAGES
    for position, (name, stage) in enumerate(stages.items()):
        assert stage.name == name
        assert set(stage.inputs) <= set(STAGES[:position]), name
        for producer, kind in stage.inputs.items():
            assert stages[producer].output is kind, (name, producer)


def test_a_stage_is_given_its_params_and_its_context_not_the_spec(tmp_path):
    access = DataAccess(own=[str(tmp_path)])
    spec = spec_for(tmp_path, training={"epochs": 3}).model_copy(update={"data_access": access})
    recorder = Recorder()
    result = runner_for(tmp_path, spec, recorder).run()
    assert result.stages["Trainer"]["status"] == StageStatus.COMPLETED
    [(ctx, params)] = recorder.seen
    assert params == EpochsParams(epochs=3)
    assert not hasattr(ctx, "spec")
    assert ctx.data_access is access  # who may be read reaches the stage, but not its cache key
    assert ctx.final_output == result.artifacts["Trainer"].path and ctx.output != ctx.final_output


def test_the_fingerprint_covers_the_params_and_nothing_else_of_the_spec(tmp_path):
    def fingerprint(**changes) -> str:
        return runner_for(tmp_path, spec_for(tmp_path, **changes)).fingerprints()["Trainer"]

    assert fingerprint(split={"seed": 7}) == fingerprint(split={"seed": 8})
    assert fingerprint(training={"epochs": 3}) != fingerprint(training={"epochs": 4})


def test_a_stage_that_leaves_out_a_file_of_its_output_type_fails(tmp_path):
    class Forgetful(Recorder):
        output = Examples

    result = runner_for(tmp_path, spec_for(tmp_path), Forgetful()).run()
    assert result.status == StageStatus.FAILED
    assert result.error["message"] == (
        "Trainer did not write its Examples artifact's train/*.parquet, eval/*.parquet, test/*.parquet, catalog.parquet"
    )


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_stage_imports_another_stages_module():
    stage_modules = {
        f"ml_pipeline.stages.{path.stem}"
        for path in (REPO / "ml_pipeline" / "stages").glob("*.py")
        if path.stem not in ("__init__", "base")
    }
    for module in stage_modules:
        path = REPO / "ml_pipeline" / "stages" / f"{module.rsplit('.', 1)[1]}.py"
        assert _imports(path) & (stage_modules - {module}) == set(), module


def _module_graph() -> dict[str, set[str]]:
    """Module-level imports among ml_pipeline's and ml_platform's modules (an import inside a function runs
    later, when both modules are loaded, so it cannot take part in a cycle at import time)."""
    modules = {}
    for package in ("ml_pipeline", "ml_platform"):
        for path in (REPO / package).rglob("*.py"):
            if "migrations" not in path.parts:
                parts = path.relative_to(REPO).with_suffix("").parts
                modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets.update({node.module, *(f"{node.module}.{alias.name}" for alias in node.names)})
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {found for target in targets if (found := known(target)) and found != name}
    return graph


def test_neither_plane_has_an_import_cycle():
    graph = _module_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError(f"import cycle: {' -> '.join(path[path.index(module) :] + [module])}")
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, [*path, module])
        done.add(module)

    assert "ml_pipeline.serving.server" in graph
    for module in sorted(graph):
        visit(module, [])


MODULE_LINES = 500
SIZE_REASON = "over the usual module size on purpose"


def test_no_module_is_over_the_usual_size_without_saying_why():
    """A module past ~500 lines is split, or says in its docstring why it is read as one."""
    oversized = []
    for package in ("ml_pipeline", "ml_platform"):
        for path in sorted((REPO / package).rglob("*.py")):
            text = path.read_text()
            docstring = " ".join((ast.get_docstring(ast.parse(text)) or "").lower().split())
            if text.count("\n") > MODULE_LINES and SIZE_REASON not in docstring:
                oversized.append(f"{path.relative_to(REPO)} ({text.count(chr(10))} lines)")
    assert not oversized, oversized
