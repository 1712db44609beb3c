"""What a remote runner's containers run: ``python -m ml_pipeline stage <Stage> ...`` and ``launch-trainer``.

``stage`` runs one stage of the run (:meth:`ml_pipeline.runner.PipelineRunner.run_one`) over the artifact
store under ``--root``, reporting through the run's signed webhooks when ``--webhook-url`` is given; the
last stage of the run also reports the run's end. Its exit code is 0 when the stage completed, was reused or
skipped, 1 when it failed (the task fails, and so does the job), 2 for a spec it cannot read.
"""

from __future__ import annotations

import argparse
import json
import sys

from ml_pipeline.errors import ConfigError, validate_model
from ml_pipeline.reporting import ConsoleReporter, FanOutReporter, Reporter, WebhookReporter
from ml_pipeline.spec import STAGES, PipelineSpec, StageStatus
from ml_pipeline.stages.base import StageFailure


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", required=True, help="the run's pipeline spec, as JSON text")
    parser.add_argument("--root", required=True, help="the artifact root every task of the run shares")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--fingerprint", default="", help="the fingerprint the platform compiled as the cache key")
    parser.add_argument("--webhook-url", default="", help="the run's webhook root; empty: report to the console only")
    parser.add_argument("--webhook-secret", default="")


def add_commands(commands) -> None:
    stage = commands.add_parser("stage", help="run one stage of a run (what a remote runner's task runs)")
    stage.add_argument("stage_name", metavar="STAGE", choices=STAGES)
    _common(stage)
    launcher = commands.add_parser("launch-trainer", help="run the Trainer as a Vertex AI custom job (GPU shapes)")
    _common(launcher)
    launcher.add_argument("--project", required=True)
    launcher.add_argument("--region", required=True, help="the GPU training region")
    launcher.add_argument("--service-account", default="")
    launcher.add_argument("--staging-dir", required=True)
    launcher.add_argument("--worker-pools", required=True, help="JSON list of worker pools, in the order to try")
    launcher.add_argument("--spot", action=argparse.BooleanOptionalAction, default=False)


def _reporter(args) -> tuple[Reporter, WebhookReporter | None]:
    webhook = WebhookReporter(args.webhook_url, args.webhook_secret) if args.webhook_url else None
    return FanOutReporter(ConsoleReporter(), webhook), webhook


def _spec(args) -> PipelineSpec:
    return validate_model(PipelineSpec, json.loads(args.spec))


def run_stage(args) -> int:
    from ml_pipeline.runner import PipelineRunner

    try:
        spec = _spec(args)
    except (ConfigError, json.JSONDecodeError) as error:
        print(f"The spec is invalid: {error}", file=sys.stderr)
        return 2
    reporter, _ = _reporter(args)
    runner = PipelineRunner(spec, args.root, run_id=args.run_id, reporter=reporter)
    computed = runner.fingerprints()[args.stage_name]
    if args.fingerprint and computed != args.fingerprint:
        # The source changed between compiling and running (or reads differently here): the computed one holds.
        print(f"{args.stage_name}: fingerprint {computed[:12]} differs from the compiled {args.fingerprint[:12]}")
    missing = ""
    try:
        outcome = runner.run_one(args.stage_name)
    except StageFailure as error:  # an input no earlier task left: nothing ran
        missing = str(error)
        reporter.stage_failed(args.stage_name, missing, "")
        outcome = StageStatus.FAILED
    if outcome == StageStatus.FAILED:
        record = runner.store.load_run_record(args.run_id) or {}
        message = missing or ((record.get("stages") or {}).get(args.stage_name) or {}).get("message", "failed")
        print(f"{args.stage_name} failed: {message}", file=sys.stderr)
        reporter.run_finished(StageStatus.FAILED, {"stage": args.stage_name, "message": message})
        return 1
    if args.stage_name == runner.selected_stages()[-1]:
        evaluation = runner.store.cached("Evaluator", runner.fingerprints().get("Evaluator", ""))[0]
        blessed = None if evaluation is None else bool(evaluation.properties.get("blessed"))
        reporter.run_finished(StageStatus.COMPLETED, {"blessed": blessed})
    return 0


def launch_trainer(args, jobs=None) -> int:
    from ml_pipeline.kfp.launcher import AiplatformCustomJobs, launch

    reporter, webhook = _reporter(args)
    stage_args = [
        "--spec",
        args.spec,
        "--root",
        args.root,
        "--run-id",
        args.run_id,
        "--fingerprint",
        args.fingerprint,
        "--webhook-url",
        args.webhook_url,
        "--webhook-secret",
        args.webhook_secret,
    ]
    result = launch(
        jobs or AiplatformCustomJobs(),
        worker_pools=json.loads(args.worker_pools),
        stage_command=["python", "-m", "ml_pipeline", "stage", "Trainer"],
        stage_args=stage_args,
        project=args.project,
        region=args.region,
        staging_dir=args.staging_dir,
        service_account=args.service_account,
        spot=args.spot,
        display_name=f"{args.run_id}-trainer",
        report=lambda event: (print(json.dumps(event)), webhook and webhook.emit(event)),
        labels={"ml-platform-run": args.run_id.lower()[:63]},
    )
    if not result.succeeded:
        print(result.message, file=sys.stderr)
        return 1
    return 0


def dispatch(args) -> int | None:
    """The exit code of a remote-runner command, or None when ``args`` is another command."""
    if args.command == "stage":
        return run_stage(args)
    if args.command == "launch-trainer":
        return launch_trainer(args)
    return None
