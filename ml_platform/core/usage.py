"""Refusing to delete what something still uses, with the reason a person can act on.

A training run keeps a link to the dataset and configs it was made from (its history, and what a rerun
starts from), but the link is SET_NULL, so nothing in the database refuses the deletion; the services
that delete a dataset or a config ask :func:`refuse_while_used` first, so the API and the pages refuse
the same way (409, "Still in use by training run 'weekly' #3": the same words as a PROTECT refusal).
"""

from __future__ import annotations

from collections.abc import Iterable

from ml_platform.core.errors import Conflict

SHOWN = 3  # users named in the message; the rest are counted


def run_label(run) -> str:
    """A training run or experiment as its pages name it: "training run 'weekly' #3", "experiment #2"."""
    kind = "experiment" if run.kind == run.EXPERIMENT else "training run"
    named = f" '{run.name}'" if run.name else ""
    return f"{kind}{named} #{run.run_number}"


def runs_using(runs) -> list[str]:
    return [run_label(run) for run in runs.order_by("kind", "run_number")]


def named(label: str, objects: Iterable) -> list[str]:
    return [f"{label} '{obj.name}'" for obj in objects]


def refuse_while_used(users: list[str]) -> None:
    """Raise Conflict naming the first few ``users`` when there are any."""
    if not users:
        return
    shown = ", ".join(users[:SHOWN])
    if len(users) > SHOWN:
        shown += f" and {len(users) - SHOWN} more"
    raise Conflict(f"Still in use by {shown}")
