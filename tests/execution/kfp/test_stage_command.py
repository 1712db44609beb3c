"""``python -m ml_pipeline stage <Stage>``: what each remote task runs, one stage over a shared artifact root."""

from __future__ import annotations

import json

from ml_pipeline.__main__ import main
from ml_pipeline.artifacts import ArtifactStore
from ml_pipeline.runner import PipelineRunner


def stage(name, spec, root, run_id):
    return main(
        ["stage", name, "--spec", json.dumps(spec.model_dump(mode="json")), "--root", str(root), "--run-id", run_id]
    )


def test_tasks_run_one_stage_each_reading_what_the_task_before_left(make_spec, tmp_path):
    spec = make_spec()
    for name in ("Compile", "ExampleGen", "StatisticsGen"):
        assert stage(name, spec, tmp_path, "run-1") == 0
    store = ArtifactStore(tmp_path, spec.name)
    prints = PipelineRunner(spec, tmp_path, run_id="run-1").fingerprints()
    for name in ("Compile", "ExampleGen", "StatisticsGen"):
        assert store.completed("run-1", name).fingerprint == prints[name]  # the compiled cache keys
    assert (store.output_dir("run-1", "ExampleGen") / "catalog.parquet").is_file()


def test_a_stage_with_the_same_fingerprint_is_reused_by_a_later_run(make_spec, tmp_path):
    spec = make_spec()
    assert stage("Compile", spec, tmp_path, "run-1") == 0
    assert stage("Compile", spec, tmp_path, "run-2") == 0
    assert ArtifactStore(tmp_path, spec.name).load_run_record("run-2")["stages"]["Compile"]["status"] == "cached"


def test_a_stage_whose_input_no_task_left_fails_saying_which(make_spec, tmp_path, capsys):
    assert stage("StatisticsGen", make_spec(), tmp_path, "run-1") == 1
    assert "needs ExampleGen's output" in capsys.readouterr().err
