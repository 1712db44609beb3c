"""Webhooks from remote runners: signed, idempotent, and unable to move a run backwards.

A runner on another machine (a Vertex AI job) reports through
``ml_pipeline.reporting.WebhookReporter``; each request is signed with the
run's own secret. Events are applied through the same DatabaseReporter the
local worker uses, so a run looks the same whichever way it ran.
"""

from __future__ import annotations

import hmac
import json
import time

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router

from ml_platform.core.errors import ApiError
from ml_platform.training.models import InvalidTransition, TrainingRun
from ml_platform.training.reporter import DatabaseReporter
from ml_pipeline.reporting import sign

router = Router(tags=["webhooks"])
MAX_CLOCK_SKEW_SECONDS = 300


def verify(run: TrainingRun, request: HttpRequest) -> dict:
    timestamp = request.headers.get("X-Timestamp", "")
    signature = request.headers.get("X-Signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
        raise ApiError(401, "Missing or stale X-Timestamp")
    expected = sign(run.webhook_secret, timestamp, request.body)
    if not hmac.compare_digest(expected, signature):
        raise ApiError(401, "Bad signature")
    try:
        return json.loads(request.body)
    except json.JSONDecodeError:
        raise ApiError(400, "The body is not JSON") from None


def _ensure_running(run: TrainingRun) -> None:
    if run.status in (TrainingRun.PENDING, TrainingRun.SUBMITTING):
        run.transition(TrainingRun.RUNNING)
    elif run.status != TrainingRun.RUNNING:
        raise ApiError(409, f"Run is {run.status}; it cannot report progress any more")


def _finish(run: TrainingRun, event: dict) -> None:
    if event.get("status") == "completed":
        blessed = (event.get("summary") or {}).get("blessed")
        run.transition(run.outcome_status(True, blessed), blessed=blessed)
    else:
        summary = event.get("summary") or {}
        run.transition(TrainingRun.FAILED, error_stage=summary.get("stage", ""),
                       error_message=summary.get("message", event.get("message", "failed")))


@router.post("/training-runs/{run_id}/webhook/{event_path}/", auth=None, response={200: dict})
def receive(request, run_id: int, event_path: str):
    """Apply one signed runner event; repeating an event changes nothing further."""
    run = get_object_or_404(TrainingRun, pk=run_id)
    event = verify(run, request)
    reporter = DatabaseReporter(run, sample_resources=False)
    kind = event.get("event")
    try:
        if kind == "run_finished":
            _finish(run, event)
        elif kind == "stage_failed":
            _ensure_running(run)
            reporter.stage_failed(event["stage"], event.get("message", ""), event.get("traceback", ""))
            run.refresh_from_db()
            run.transition(TrainingRun.FAILED, error_stage=event["stage"], error_message=event.get("message", ""))
        else:
            _ensure_running(run)
            if kind == "stage_started":
                reporter.stage_started(event["stage"], event.get("info", {}))
            elif kind == "stage_completed":
                reporter.stage_completed(event["stage"], event.get("summary", ""), event.get("properties", {}),
                                         bool(event.get("cached")))
            elif kind == "stage_skipped":
                reporter.stage_skipped(event["stage"], event.get("reason", ""))
            elif kind == "epoch_completed":
                reporter.epoch_completed(int(event["epoch"]), int(event["total_epochs"]), event.get("metrics", {}))
            else:
                raise ApiError(422, f"Unknown event '{kind}'")
    except InvalidTransition as refused:
        raise ApiError(409, f"Run is {refused.current}; it cannot become {refused.wanted}") from None
    except KeyError as missing:
        raise ApiError(422, f"Event field {missing} is required") from None
    run.refresh_from_db()
    return {"status": run.status}
