"""The compiled spec is runnable: each task's command and arguments, with the pipeline's parameters filled in as
KFP fills them, run here in task order over one artifact root, run the whole pipeline."""

from __future__ import annotations

import re

import pytest

from ml_pipeline.__main__ import main
from ml_pipeline.artifacts import ArtifactStore
from ml_pipeline.kfp.compiler import compile_pipeline, load_ir
from ml_pipeline.spec import STAGES

PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['(\w+)'\]\}\}")


@pytest.mark.slow
def test_every_task_of_the_compiled_pipeline_runs_its_stage(make_spec, fingerprints_of, make_target, tmp_path):
    spec = make_spec("retrieval", training={"epochs": 1, "batch_size": 256}, split={"sample_percent": 100})
    target = make_target("kubeflow", artifact_root=str(tmp_path / "artifacts"), webhook_url="")
    ir, _ = load_ir(compile_pipeline(spec, target, run_id="run-7", fingerprints=fingerprints_of(spec)))
    defaults = {name: p.get("defaultValue", "") for name, p in ir["root"]["inputDefinitions"]["parameters"].items()}
    executors = ir["deploymentSpec"]["executors"]
    for stage in STAGES:
        container = executors[
            ir["components"][ir["root"]["dag"]["tasks"][stage.lower()]["componentRef"]["name"]]["executorLabel"]
        ]["container"]
        assert container["command"][:3] == ["python", "-m", "ml_pipeline"]
        argv = container["command"][3:] + [
            PLACEHOLDER.sub(lambda m: defaults[m.group(1)], a) for a in container["args"]
        ]
        assert main(argv) == 0, stage
    record = ArtifactStore(tmp_path / "artifacts", spec.name).load_run_record("run-7")
    statuses = {stage: line["status"] for stage, line in record["stages"].items()}
    assert all(statuses[stage] == "completed" for stage in STAGES[:-1]), statuses
    assert statuses["Pusher"] in ("completed", "skipped")  # pushed when blessed
