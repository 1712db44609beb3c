"""What may be done to a run in its state: each action's rule written once.

The services refuse an action with ``Conflict(reason)``; the presenters list the actions a run's card
offers (``allowed``), from the same functions, so a button is shown exactly where the API would accept it.
A rule reads a :class:`RunState`, made from a run (``of``) or from a row of the list's query (``from_row``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ml_platform.training.models import TERMINAL_STATUSES, RunKind, RunStatus

# Runs whose parameters may still be edited: nothing is executing them.
EDITABLE = (*TERMINAL_STATUSES, RunStatus.SCHEDULED)
# The actions a card may offer, in the order it shows them.
ACTIONS = ("cancel", "rerun", "edit", "push", "deploy", "promote", "delete")


@dataclass(frozen=True)
class RunState:
    """The facts the rules look at."""

    run_number: int
    kind: str
    status: str
    blessed: bool | None = None
    blessing_reasons: tuple[str, ...] = ()
    registry_version: int | None = None
    model_name: str = ""
    deployed_version: int | None = None  # the registered model's
    has_serving_model: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def of(cls, run) -> RunState:
        registered = run.registered_model
        return cls(
            run_number=run.run_number,
            kind=run.kind,
            status=run.status,
            blessed=run.blessed,
            blessing_reasons=tuple(run.blessing_reasons or ()),
            registry_version=run.registry_version,
            model_name=registered.name if registered else run.name,
            deployed_version=registered.deployed_version if registered else None,
            has_serving_model=bool(run.serving_model_path),
        )

    @classmethod
    def from_row(cls, row: dict) -> RunState:
        """From the list's row (``presenters.run_page``): the Pusher's artifact uri stands for the model."""
        return cls(
            run_number=row["run_number"],
            kind=row["kind"],
            status=row["status"],
            blessed=row.get("blessed"),
            registry_version=row.get("registry_version"),
            model_name=row.get("name") or "",
            deployed_version=row.get("deployed_version"),
            has_serving_model=bool(row.get("serving_uri")),
        )


def cancel_refused(run: RunState) -> str | None:
    return f"Run is already {run.status}" if run.terminal else None


def rerun_refused(run: RunState) -> str | None:
    return None if run.terminal else f"Only finished runs can be rerun; this one is {run.status}"


def edit_refused(run: RunState) -> str | None:
    if run.kind == RunKind.EXPERIMENT:
        return "An experiment's configuration is not edited; rerun it edited instead"
    if run.status not in EDITABLE:
        return f"A {run.status} run's configuration cannot be edited; cancel it or wait until it has finished"
    return None


def delete_refused(run: RunState) -> str | None:
    if not run.terminal:
        return f"Only finished runs can be deleted; this one is {run.status}"
    if run.registry_version and run.deployed_version == run.registry_version:
        return f"Version {run.registry_version} of {run.model_name} is deployed; undeploy it first"
    return None


def push_refused(run: RunState) -> str | None:
    if run.status == RunStatus.NOT_BLESSED or run.blessed is False:
        reasons = "; ".join(run.blessing_reasons) or "the evaluator did not bless it"
        return f"Only blessed models can be registered: {reasons}"
    if run.status != RunStatus.COMPLETED:
        return f"Only completed runs can be registered; this one is {run.status}"
    if run.registry_version is not None:
        return f"Already registered as version {run.registry_version}"
    if not run.has_serving_model:
        return "This run exported no serving model (it ran without the Pusher)"
    return None


def deploy_refused(run: RunState) -> str | None:
    """Whether the version this run became can be sent to the endpoint (whether its files are still there is
    the deployment service's to check)."""
    if run.registry_version is None:
        return f"Run #{run.run_number} is not registered; push it to the registry before deploying"
    if run.deployed_version == run.registry_version:
        return f"Version {run.registry_version} of {run.model_name} is already deployed"
    return None


def promote_refused(run: RunState) -> str | None:
    if run.kind != RunKind.EXPERIMENT:
        return "Only experiments are promoted"
    if run.status != RunStatus.COMPLETED:
        return f"Exp #{run.run_number} is {run.status}; only a completed experiment can be promoted"
    return None


RULES = {
    "cancel": cancel_refused,
    "rerun": rerun_refused,
    "edit": edit_refused,
    "push": push_refused,
    "deploy": deploy_refused,
    "promote": promote_refused,
    "delete": delete_refused,
}


def allowed(run: RunState) -> list[str]:
    """The actions the run accepts now, in the card's order."""
    return [name for name in ACTIONS if RULES[name](run) is None]
