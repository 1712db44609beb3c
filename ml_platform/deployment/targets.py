"""Where a registered model's version can be deployed: the adapter interface and the targets available.

The deployment services (``services.py``) own the state and the history; a
:class:`DeploymentTarget` only brings a model up, takes it down and says how
it is. The local serving endpoint (``local.py``) and the cloud targets
(``cloud.py``: a Vertex AI endpoint, Cloud Run with TF Serving) implement it;
the cloud ones are available once the cloud settings are there (:func:`get_target`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

from ml_pipeline.errors import Problem


class DeploymentFailed(Exception):
    """A target could not deploy, undeploy or reach a model; the message says why, for the user."""


@dataclass(frozen=True)
class ModelToServe:
    """Everything a target needs to serve one registered version."""

    serving_name: str  # unique across projects: "p<project id>-<project>.<registered model>"
    version: int  # the registry version
    model_path: Path  # the serving SavedModel the Pusher exported
    examples_path: Path  # the run's ExampleGen output (splits and catalog), for lookups built from the data
    buyer_features: list[dict] = field(default_factory=list)  # the buyer tower's features (column, kind, ...)
    run_id: int | None = None


@dataclass
class TargetStatus:
    """What a target reports about one model: ``state`` is one of the STATES."""

    AVAILABLE, LOADING, ABSENT, FAILED, UNREACHABLE = "available", "loading", "absent", "failed", "unreachable"
    STATES = (AVAILABLE, LOADING, ABSENT, FAILED, UNREACHABLE)

    state: str
    version: int | None = None
    endpoint_url: str = ""
    message: str = ""

    def as_dict(self) -> dict:
        return {
            "state": self.state,
            "version": self.version,
            "endpoint_url": self.endpoint_url,
            "message": self.message,
        }


class DeploymentTarget(abc.ABC):
    """A place a model version can be served from (the local endpoint, a Vertex AI endpoint, Cloud Run).

    One version per ``serving_name`` at a time: :meth:`deploy` replaces
    whatever version that name served, and returns only once the new one
    answers (or raises :class:`DeploymentFailed`, leaving the previous version
    serving when there was one).
    """

    name: str = ""
    label: str = ""

    @abc.abstractmethod
    def deploy(self, model: ModelToServe) -> TargetStatus:
        """Serve ``model`` under its serving name; returns its status once it answers."""

    @abc.abstractmethod
    def undeploy(self, serving_name: str) -> TargetStatus:
        """Stop serving ``serving_name``; returns its status (``absent``) once it no longer answers."""

    @abc.abstractmethod
    def status(self, serving_name: str) -> TargetStatus:
        """How ``serving_name`` is served right now (cheap: a status page, not a prediction)."""

    def forget(self, serving_name: str, keep_versions: set[int]) -> None:  # noqa: B027 (an optional hook)
        """Drop files the target kept for versions no longer needed (optional: a no-op by default)."""


def available_targets() -> dict[str, type[DeploymentTarget]]:
    """The local endpoint always; the cloud targets once the cloud settings are there (``cloud.CLOUD_SETTINGS``)."""
    from ml_platform.deployment.cloud import CloudRunTarget, VertexEndpointTarget, missing_settings
    from ml_platform.deployment.local import LocalServingTarget

    targets: dict[str, type[DeploymentTarget]] = {LocalServingTarget.name: LocalServingTarget}
    if not missing_settings():
        targets.update({VertexEndpointTarget.name: VertexEndpointTarget, CloudRunTarget.name: CloudRunTarget})
    return targets


NOT_CONFIGURED = {
    "vertex_ai": "Deploying to a Vertex AI endpoint is not configured in this installation",
    "cloud_run": "Deploying to Cloud Run is not configured in this installation",
}


def get_target(name: str) -> DeploymentTarget:
    """The target called ``name``; Invalid naming the ``target`` field when it is unknown or not available."""
    from ml_platform.core.errors import Invalid
    from ml_platform.deployment.cloud import missing_settings

    targets = available_targets()
    if name in targets:
        return targets[name]()
    if name in NOT_CONFIGURED:
        reason = f"{NOT_CONFIGURED[name]} (set {', '.join(missing_settings())})"
    else:
        reason = f"unknown deployment target '{name}'"
    raise Invalid(Problem("target", f"{reason}; available: {', '.join(sorted(targets))}"))
