"""Command line: ``python -m ml_pipeline run SPEC.json --root DIR``, ``plan SPEC.json``; ``stage`` and
``launch-trainer`` are what a remote runner's containers run (:mod:`ml_pipeline.kfp.commands`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ml_pipeline.errors import ConfigError, Problem, validate_model
from ml_pipeline.kfp import commands as remote
from ml_pipeline.reporting import ConsoleReporter, FanOutReporter, JsonLinesReporter
from ml_pipeline.runner import PipelineRunner
from ml_pipeline.spec import STAGES, PipelineSpec, StageStatus


def load_spec(path: str) -> PipelineSpec:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(Problem("", f"cannot read spec {path}: {error}")) from None
    return validate_model(PipelineSpec, data)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info lines drown the progress
    parser = argparse.ArgumentParser(prog="python -m ml_pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the pipeline")
    plan = commands.add_parser("plan", help="show which stages would run or be reused, and why")
    for sub in (run, plan):
        sub.add_argument("spec", help="pipeline spec (JSON)")
        sub.add_argument("--root", default="pipelines", help="pipeline root folder (default: ./pipelines)")
        sub.add_argument("--run-id", help="run id; give an earlier one to resume that run")
        sub.add_argument("--from", dest="from_stage", choices=STAGES, help="recompute from this stage on")
    run.add_argument("--events", help="also write every event to this JSON-lines file")
    run.add_argument("--verbose", action="store_true", help="print every log line")
    remote.add_commands(commands)  # stage, launch-trainer: what a remote runner's containers run
    args = parser.parse_args(argv)
    if (code := remote.dispatch(args)) is not None:
        return code

    try:
        spec = load_spec(args.spec)
    except ConfigError as error:
        print("The spec is invalid:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2

    if args.command == "plan":
        runner = PipelineRunner(spec, args.root, run_id=args.run_id or "plan")
        for step in runner.plan(args.from_stage):
            print(f"{step.stage:<14} {step.action:<6} {step.reason}")
        return 0

    reporter = FanOutReporter(
        ConsoleReporter(verbose=args.verbose), JsonLinesReporter(args.events) if args.events else None
    )
    runner = PipelineRunner(spec, args.root, run_id=args.run_id, reporter=reporter)
    print(f"Run {runner.run_id} of {spec.name} under {runner.store.base}")
    result = runner.run(args.from_stage)
    if result.status != StageStatus.COMPLETED:
        print(f"Failed at {result.error['stage']}: {result.error['message']}", file=sys.stderr)
        return 1
    if result.blessed is False:
        print("The model was not blessed; nothing was pushed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
