"""The view modal's Pipeline tab (training/view/_pipeline.html): the eight stages as a DAG with a status icon
each, and the chosen stage's log (its tail, refreshed on demand, the whole file downloadable through the
API), its artifact's lineage and, for the stage a run failed in, its error with the traceback.

The chosen stage travels in the tab's query (``?stage=Trainer``), which the tab's body repeats in
``data-query`` so the modal's refresh asks for the same stage again. A failed run opens at its failed stage,
a running one at its running stage.
"""

from __future__ import annotations

from datetime import datetime

from django.http import Http404
from django.shortcuts import render
from django.urls import reverse

from ml_pipeline.spec import STAGES, StageStatus
from ml_platform.training import outputs, presenters
from ml_platform.training.access import run_for_user
from ml_platform.training.models import TrainingRun
from ml_platform.training.schemas import LOG_NAMES
from ml_platform.training.templatetags.runs import stage_label

LOG_LINES = 200
# The icon of a stage's status in the DAG (a running stage's is a spinner, drawn by view-modal.css).
STAGE_ICONS = {
    "pending": "○",
    "running": "",
    "completed": "✓",
    "cached": "↻",
    "failed": "✗",
    "skipped": "⤼",
    "interrupted": "!",
    "cancelled": "⊘",
}


def stage_lines(run: TrainingRun, detail: dict) -> list[dict]:
    """The run's stages in order, each with its duration, icon, artifact and the run a cached one came from."""
    artifacts = {artifact["stage"]: artifact for artifact in detail["artifacts"]}
    for stage in detail["stages"]:
        stage["label"] = stage_label(stage["name"])
        stage["icon"] = STAGE_ICONS.get(stage["status"], "•")
        stage["artifact"] = artifacts.get(stage["name"])
        stage["cached_from"] = outputs.cached_from(run, stage["name"])
        started, ended = _moment(stage["started_at"]), _moment(stage["ended_at"])
        stage["duration"] = (ended - started).total_seconds() if started and ended else None
    return detail["stages"]


def default_stage(run: TrainingRun, stages: list[dict]) -> str | None:
    """The stage shown when none was chosen: the one the run failed in, else the one running."""
    if run.error_stage in STAGES:
        return run.error_stage
    for wanted in (StageStatus.FAILED, StageStatus.RUNNING):
        found = next((s["name"] for s in stages if s["status"] == wanted), None)
        if found:
            return found
    return None


def pipeline(run: TrainingRun, detail: dict, stage: str | None) -> dict:
    """The Pipeline tab: every stage's node and the chosen one's detail (``stage``: checked by the view)."""
    stages = stage_lines(run, detail)
    chosen = stage if stage in STAGES else default_stage(run, stages)
    selected = None
    if chosen:
        selected = next(s for s in stages if s["name"] == chosen)
        selected = {**selected, "log": log_entry(run, chosen)}
        error = detail["error"]
        selected["error"] = error if error and error.get("stage") == chosen else None
    return {
        "pipeline_stages": stages,
        "selected": selected,
        "pipeline_query": f"stage={chosen}" if chosen else "",
        "stage_names": STAGES,
        "worker_log": log_entry(run, "worker"),
    }


def log_entry(run: TrainingRun, name: str) -> dict:
    """A log's tail as the API's logs answer has it, with the URL its whole file downloads from."""
    answer = outputs.logs_of(run, name, LOG_LINES)
    entry = answer["worker"] if name == "worker" else answer["stages"][0]
    entry["download_url"] = download_url(run, name) if entry["available"] else None
    entry["name"] = name
    return entry


def download_url(run: TrainingRun, name: str) -> str:
    """The API's download of the log ``name`` (routes.add_output_routes), under the run's own kind."""
    if run.is_experiment:
        return reverse("api-1:ml_platform_experiments_api_download_log", kwargs={"experiment_id": run.pk, "name": name})
    return reverse("api-1:ml_platform_training_api_download_log", kwargs={"run_id": run.pk, "name": name})


def stage_problem(stage: str | None) -> str | None:
    """What is wrong with the tab's ``?stage=`` (None: nothing): the answer names the field."""
    if stage and stage not in STAGES:
        return f"stage: no stage '{stage}'; one of {', '.join(STAGES)}"
    return None


def stage_log(request, run_id: int, name: str):
    """One log's tail (the Pipeline tab's Refresh button asks for it alone)."""
    if name not in LOG_NAMES:
        raise Http404(f"No log '{name}'")
    run = run_for_user(request.user, run_id, *presenters.DETAIL_RELATED, kind=None)
    return render(request, "training/view/_stage_log.html", {"log": log_entry(run, name), "run": run})


def _moment(value):
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None
