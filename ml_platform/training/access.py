"""Who may see which run: a run or experiment is reached through its project's membership, else 404."""

from __future__ import annotations

from django.http import Http404

from ml_platform.training.models import TrainingRun


def run_for_user(user, run_id: int, *related: str, kind: str | None = TrainingRun.TRAINING) -> TrainingRun:
    """The run (of ``kind``; None: either kind) if the user is a member of its project, else 404."""
    runs = TrainingRun.objects.select_related("project", *related).filter(pk=run_id, project__memberships__user=user)
    run = (runs.filter(kind=kind) if kind else runs).first()
    if run is None:
        raise Http404("No such experiment" if kind == TrainingRun.EXPERIMENT else "No such training run")
    return run
