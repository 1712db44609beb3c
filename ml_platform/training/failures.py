"""What a run says when it fails outside its stages: a killed pipeline process, a pipeline root that cannot
be written, anything that stops the pipeline before (or after) its stages.

The worker and the pipeline process both record these on the run itself, at
once; the user reads the cause on the run, not in a server log. Messages name
the setting to fix and show paths only relative to the pipeline root.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from django.conf import settings

from ml_pipeline.spec import STAGES, StageStatus
from ml_platform.training.models import InvalidTransition, TrainingRun

logger = logging.getLogger(__name__)


def _roots() -> list[Path]:
    root = Path(str(settings.PIPELINE_ROOT)).expanduser()
    return list(dict.fromkeys([Path(os.path.abspath(root)), root.resolve()]))


def _relative_to_root(filename) -> str | None:
    """``filename`` relative to the pipeline root ("" for the root or a folder above it); None when elsewhere."""
    path = Path(os.path.abspath(os.fsdecode(filename)))
    for root in _roots():
        if path == root or path in root.parents:
            return ""
        if root in path.parents:
            return str(path.relative_to(root))
    return None


def pipeline_root_error(error: BaseException) -> str | None:
    """The message for an OSError on the pipeline root; None for any other error."""
    if not isinstance(error, OSError) or not error.filename:
        return None
    where = _relative_to_root(error.filename)
    if where is None:
        return None
    reason = (error.strerror or type(error).__name__).lower()
    at = f" at '{where}'" if where else ""
    return f"cannot write the pipeline root: {reason}{at} (check the PIPELINE_ROOT setting)"


def _without_server_paths(text: str) -> str:
    for root in _roots():
        text = text.replace(str(root), "PIPELINE_ROOT")
    return text.replace(str(Path(settings.DATA_DIR).resolve()), "DATA_DIR")


def outside_stages_message(error: BaseException, context: str) -> str:
    """``context``: what could not happen, e.g. "the pipeline could not start"."""
    return pipeline_root_error(error) or _without_server_paths(f"{context}: {type(error).__name__}: {error}")


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def killed_message(signum: int, peak_rss_bytes: int, attempts: int) -> str:
    """Why a run whose pipeline process was killed by a signal failed, once it has no attempts left."""
    why = f"{signal_name(signum)}: possibly out of memory" if signum == signal.SIGKILL else signal_name(signum)
    peak = f", at a peak memory of {peak_rss_bytes / 2**20:,.0f} MB" if peak_rss_bytes else ""
    tries = f", after {attempts} attempts" if attempts > 1 else ""
    return f"the pipeline process was killed by signal {signum} ({why}){peak}{tries} (see worker.log in the run folder)"


def first_stage(run: TrainingRun) -> str:
    """Where a run that failed outside its stages stopped: its current stage, else the first it would run."""
    if run.current_stage:
        return run.current_stage
    return next((s for s in STAGES if (run.stages or {}).get(s, {}).get("status") != StageStatus.SKIPPED), STAGES[0])


def fail_outside_stages(run: TrainingRun, message: str, traceback: str = "") -> str:
    """Fail the run with ``message`` (unless it ended meanwhile); return its status."""
    run.refresh_from_db()
    try:
        run.transition(
            TrainingRun.FAILED,
            error_stage=first_stage(run),
            error_message=message,
            error_traceback=_without_server_paths(traceback),
        )
    except InvalidTransition as refused:
        logger.info("run %s failed outside its stages (%s) but is already %s", run.pk, message, refused.current)
        return refused.current
    return TrainingRun.FAILED
