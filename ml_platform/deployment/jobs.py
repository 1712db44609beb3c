"""Deploys, rollbacks and undeploys in the background: the web server records a request, the worker carries it out.

A request is refused at once for what can be known at once (no such version,
its files are gone, nothing to roll back, an unknown target, another request
of the same model still in flight); otherwise the model's :class:`Deployment`
gets ``state = "loading"`` (``"stopping"`` for an undeploy) and the pending
action, and the answer goes back without waiting. The worker
(:meth:`ml_platform.training.worker.Worker.carry_out_deployments`) claims the
request with a guarded UPDATE (so two workers never carry out the same one),
runs ``manage.py run_deployment <id>`` in a child process that does the
synchronous action of :mod:`ml_platform.deployment.services` (wait until the
version answers a health request, or fail, leaving the previous version
serving), and the state becomes ``serving``, ``failed`` (``message`` says why)
or ``none``. The request is in the database, so it survives a restart of the
web server or the worker: a claim whose worker stopped refreshing it is taken
again.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from ml_platform.core import clock
from ml_platform.core.errors import Conflict, DomainError
from ml_platform.deployment import services
from ml_platform.deployment.models import Deployment, DeploymentAction, DeploymentState
from ml_platform.registry.models import RegisteredModel

log = logging.getLogger(__name__)


def _claim_stale_after() -> timedelta:
    return timedelta(seconds=settings.RUN_STALE_AFTER_SECONDS)


def _queue(registered: RegisteredModel, action: str, user, version: int | None, target: str, message: str) -> None:
    """Record the request; Conflict when one of this model is still in flight (guarded, so two never race)."""
    with transaction.atomic():
        deployment, _ = Deployment.objects.get_or_create(
            registered_model=registered,
            defaults={"serving_name": services.serving_name(registered), "target": target},
        )
        fields = {
            "pending_action": action,
            "pending_version": version,
            "pending_target": target,
            "requested_by": user if getattr(user, "pk", None) else None,
            "requested_at": clock.now(),
            "claimed_by": "",
            "claimed_at": None,
            "state": DeploymentState.STOPPING if action == DeploymentAction.UNDEPLOY else DeploymentState.LOADING,
            "message": message,
            "updated_at": clock.now(),
        }
        if not Deployment.objects.filter(pk=deployment.pk, pending_action="").update(**fields):
            busy = Deployment.objects.get(pk=deployment.pk)
            what = busy.get_pending_action_display().lower()
            of = f" to version {busy.pending_version}" if busy.pending_version else ""
            raise Conflict(f"A {what}{of} of {registered.name} is in progress; try again when it has finished")


def request_deploy(registered: RegisteredModel, version: int, user, target: str = "local") -> Deployment:
    """Ask for ``version`` to be served; returns at once with the deployment ``loading``."""
    services.check_deploy(registered, version, target)  # 404 / 409 / 422 now, not later
    _queue(registered, DeploymentAction.DEPLOY, user, version, target, f"Loading version {version}")
    return services.current(registered)


def request_rollback(registered: RegisteredModel, user) -> Deployment:
    version = services.check_rollback(registered)
    services.model_to_serve(registered, version)
    target = services.current(registered).target
    _queue(registered, DeploymentAction.ROLLBACK, user, version, target, f"Rolling back to version {version}")
    return services.current(registered)


def request_undeploy(registered: RegisteredModel, user) -> Deployment:
    deployment = services.current(registered)
    if deployment is None or deployment.status == Deployment.NONE:
        raise Conflict(f"{registered.name} is not deployed")
    version = deployment.version if deployment.status == Deployment.DEPLOYED else None
    _queue(registered, DeploymentAction.UNDEPLOY, user, version, deployment.target, "Undeploying")
    return services.current(registered)


# -- the worker's side --------------------------------------------------------------------------
def claim(worker_id: str) -> Deployment | None:
    """The oldest request nobody carries out (or whose worker stopped refreshing its claim), now ours."""
    stale_before = clock.now() - _claim_stale_after()
    waiting = Deployment.objects.exclude(pending_action="").filter(
        Q(claimed_by="") | Q(claimed_at__lt=stale_before) | Q(claimed_at__isnull=True)
    )
    for candidate in waiting.order_by("requested_at", "pk").only("pk", "claimed_by", "claimed_at")[:5]:
        claimed = (
            Deployment.objects.filter(pk=candidate.pk, claimed_by=candidate.claimed_by, claimed_at=candidate.claimed_at)
            .exclude(pending_action="")
            .update(claimed_by=worker_id, claimed_at=clock.now())
        )
        if claimed:
            return Deployment.objects.get(pk=candidate.pk)
    return None


def refresh_claim(deployment_id: int, worker_id: str) -> None:
    Deployment.objects.filter(pk=deployment_id, claimed_by=worker_id).update(claimed_at=clock.now())


def release(deployment_id: int, worker_id: str, reason: str) -> None:
    """A claimed request whose child ended without finishing it: failed, with why (the target's state holds)."""
    deployment = Deployment.objects.filter(pk=deployment_id, claimed_by=worker_id).exclude(pending_action="").first()
    if deployment is not None:
        _finish(deployment, failure=f"The request was not carried out: {reason}")


def carry_out(deployment_id: int) -> Deployment:
    """Do the pending action (``manage.py run_deployment``): returns once it serves, or failed."""
    deployment = Deployment.objects.select_related("registered_model", "requested_by").get(pk=deployment_id)
    action, version, user = deployment.pending_action, deployment.pending_version, deployment.requested_by
    registered = deployment.registered_model
    if not action:
        return deployment
    try:
        if action == DeploymentAction.DEPLOY:
            services.deploy(registered, version, user, deployment.pending_target or "local")
        elif action == DeploymentAction.ROLLBACK:
            services.rollback(registered, user, version)
        else:
            services.undeploy(registered, user)
    except DomainError as error:
        return _finish(Deployment.objects.get(pk=deployment_id), failure=error.message)
    except Exception as error:  # noqa: BLE001 - the request must end, with the reason, whatever happened
        log.exception("carrying out the %s of %s failed", action, registered)
        return _finish(Deployment.objects.get(pk=deployment_id), failure=f"{type(error).__name__}: {error}")
    return _finish(Deployment.objects.get(pk=deployment_id))


def _finish(deployment: Deployment, failure: str | None = None) -> Deployment:
    fields = {"pending_action": "", "pending_version": None, "pending_target": "", "claimed_by": "", "claimed_at": None}
    if failure is not None:
        fields["state"] = DeploymentState.FAILED
        still = deployment.status == Deployment.DEPLOYED and f"version {deployment.version} is still deployed"
        if still and still not in failure:
            failure = f"{failure} ({still})"
        fields["message"] = failure
    elif deployment.state in (DeploymentState.LOADING, DeploymentState.STOPPING):  # nothing set it: say what holds
        fields["state"] = DeploymentState.SERVING if deployment.status == Deployment.DEPLOYED else DeploymentState.NONE
    for name, value in fields.items():
        setattr(deployment, name, value)
    deployment.save(update_fields=[*fields, "updated_at"])
    return deployment


class Carrier:
    """The worker's side: claims one request at a time and carries it out in a child process
    (``manage.py run_deployment``), so the worker's loop (heartbeats, claims) never waits for a model to load."""

    def __init__(self, worker_id: str, popen=None) -> None:
        import subprocess

        self.worker_id = worker_id
        self.popen = popen or subprocess.Popen
        self.child: tuple[int, object] | None = None  # (deployment id, its process)

    def step(self) -> int:
        """Follow the child, or claim and start the next request; 1 when something happened."""
        import sys

        if self.child is not None:
            deployment_id, process = self.child
            if process.poll() is None:
                refresh_claim(deployment_id, self.worker_id)
                return 0
            self.child = None
            release(deployment_id, self.worker_id, f"its process ended with code {process.returncode}")
            return 1
        deployment = claim(self.worker_id)
        if deployment is None:
            return 0
        command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "run_deployment", str(deployment.pk)]
        try:
            self.child = (deployment.pk, self.popen(command))
        except OSError as error:
            log.exception("the %s of deployment %s could not be started", deployment.pending_action, deployment.pk)
            release(deployment.pk, self.worker_id, f"its process could not be started: {error}")
        return 1

    def stop(self, grace: float = 10.0) -> None:
        """Stop the child (the worker is stopping) and give the request back: the next worker carries it out."""
        import subprocess

        if self.child is None:
            return
        deployment_id, process = self.child
        self.child = None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        Deployment.objects.filter(pk=deployment_id, claimed_by=self.worker_id).exclude(pending_action="").update(
            claimed_by="", claimed_at=None
        )
