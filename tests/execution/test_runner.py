"""The runner: caching by fingerprint, visible plans, forced recompute, reporters.

These use the real Compile stage, whose output depends on the whole spec;
the full-pipeline tests cover caching across the data and model stages.
"""

import json

from ml_pipeline.reporting import FanOutReporter, InMemoryReporter, JsonLinesReporter
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.spec import PipelineSpec
from ml_pipeline.stages.compile import Compile
from tests.helpers import compile_spec_dict

STAGES = {"Compile": Compile()}


def runner_for(tmp_path, spec, run_id, reporter=None):
    return PipelineRunner(spec, tmp_path / "root", run_id=run_id, reporter=reporter, stages=STAGES)


def make_spec(tmp_path, **changes) -> PipelineSpec:
    csv = tmp_path / "p.csv"
    if not csv.exists():
        csv.write_text("customer,item,ordered_at,qty,segment\nc1,p1,2025-01-01,2,retail\n")
    return PipelineSpec.model_validate(compile_spec_dict(csv, **changes))


def test_unchanged_inputs_are_reused_from_an_earlier_run(tmp_path):
    spec = make_spec(tmp_path)
    first = runner_for(tmp_path, spec, "r1").run()
    runner = runner_for(tmp_path, spec, "r2", InMemoryReporter())
    [step] = runner.plan()
    assert (step.action, step.reason) == ("reuse", "same inputs and config as run r1")
    second = runner.run()
    assert second.stages["Compile"]["status"] == "cached"
    assert second.artifacts["Compile"].uri == first.artifacts["Compile"].uri
    assert runner.reporter.of_kind("stage_completed")[0]["cached"] is True


def test_a_changed_config_runs_again(tmp_path):
    runner_for(tmp_path, make_spec(tmp_path), "r1").run()
    changed = make_spec(tmp_path, training={"epochs": 3})
    [step] = runner_for(tmp_path, changed, "r2").plan()
    assert (step.action, step.reason) == ("run", "no earlier output with these inputs and config")


def test_a_cached_artifact_whose_files_were_deleted_is_never_reused(tmp_path):
    spec = make_spec(tmp_path)
    first = runner_for(tmp_path, spec, "r1").run()
    (first.artifacts["Compile"].path / "compiled_spec.json").unlink()
    runner = runner_for(tmp_path, spec, "r2")
    [step] = runner.plan()
    assert step.action == "run"
    assert step.reason == "files of the earlier output (r1) were deleted or changed"
    assert runner.run().stages["Compile"]["status"] == "completed"


def test_recompute_can_be_forced_from_a_named_stage(tmp_path):
    spec = make_spec(tmp_path)
    runner_for(tmp_path, spec, "r1").run()
    runner = runner_for(tmp_path, spec, "r2")
    [step] = runner.plan(from_stage="Compile")
    assert (step.action, step.reason) == ("run", "recompute requested from Compile")
    assert runner.run(from_stage="Compile").stages["Compile"]["status"] == "completed"


def test_a_resumed_run_keeps_what_it_completed(tmp_path):
    spec = make_spec(tmp_path)
    runner_for(tmp_path, spec, "r1").run()
    [step] = runner_for(tmp_path, spec, "r1").plan()
    assert (step.action, step.reason) == ("reuse", "already completed in this run")


def test_a_resumed_run_that_recomputes_from_a_stage_keeps_what_it_already_redid(tmp_path):
    spec = make_spec(tmp_path)
    runner_for(tmp_path, spec, "r1").run()
    runner_for(tmp_path, spec, "r2").run(from_stage="Compile")  # redone once in r2 ...
    [step] = runner_for(tmp_path, spec, "r2").plan(from_stage="Compile")  # ... and r2 resumes
    assert (step.action, step.reason) == ("reuse", "already completed in this run")


def test_events_go_to_every_reporter_and_the_json_lines_file(tmp_path):
    memory = InMemoryReporter()
    lines = tmp_path / "events.jsonl"
    runner_for(tmp_path, make_spec(tmp_path), "r1", FanOutReporter(memory, JsonLinesReporter(lines))).run()
    written = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [e["event"] for e in written] == [e["event"] for e in memory.events]
    assert [e["event"] for e in written][:1] == ["stage_started"]
    assert written[-1] == {**written[-1], "event": "run_finished", "status": "completed"}


def test_the_run_record_tells_each_stage_status(tmp_path):
    runner = runner_for(tmp_path, make_spec(tmp_path), "r1")
    runner.run()
    record = runner.store.load_run_record("r1")
    assert record["stages"]["Compile"]["status"] == "completed"
    assert record["spec"]["name"] == "compile-test"
