"""Acting on a blessed scheduled run as its schedule says: push it to the registry, and ask for its deploy.

* **Off the tick.** Settling a firing marks its action *pending* (scheduler.settle); the worker takes one
  pending action at a time (:func:`claim_blessed_action`) and runs it in a child process
  (``manage.py act_on_blessed``). The state is on the row, so a worker that dies mid-push loses nothing: its
  action is pending again once stale (or at once, when its own worker sees the child die), and a push
  already made is not made twice.
* **One model at a time.** An action is claimed only while no other action of the same registered model is
  in hand (acting, or waiting for its deploy), in one guarded UPDATE under the model's row lock, so two
  workers never promote two runs of one model at the same instant (see :func:`_take`).
* **The background deploy.** "Push and deploy" asks the deploy jobs for the deploy
  (:func:`ml_platform.deployment.jobs.request_deploy`, which the worker's deploy carrier carries out, as it
  does a user's) and does not wait for the version to load; none is asked while another request of the
  model is still in flight. The firing then waits in *deploying*; :func:`follow_deploys` (in the tick)
  records the outcome once the request has ended and announces a new version deployed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F

from ml_platform.audit import services as audit
from ml_platform.core import clock
from ml_platform.core.errors import Conflict, DomainError
from ml_platform.deployment import jobs
from ml_platform.deployment import services as deployment_services
from ml_platform.deployment.models import Deployment, DeploymentAction
from ml_platform.registry import services as registry_services
from ml_platform.registry.models import RegisteredModel
from ml_platform.schedules import notifications
from ml_platform.schedules.models import ActionState, NotifyEvent, OnBlessed, ScheduleFiring
from ml_platform.training.models import TrainingRun

logger = logging.getLogger(__name__)

ACTOR = audit.Actor("scheduler", audit.Via.SYSTEM)
ACTION_MAX_ATTEMPTS = 3
ACTION_GRACE = timedelta(minutes=5)
IN_HAND = (ActionState.ACTING, ActionState.DEPLOYING)


def action_stale_after() -> timedelta:
    """How long an action may be in hand before it counts as lost: a deploy's longest wait, and some."""
    return timedelta(seconds=settings.SERVING_LOAD_TIMEOUT) + ACTION_GRACE


def claim_blessed_action(now: datetime | None = None) -> ScheduleFiring | None:
    """Take the oldest pending push (and deploy) whose model has no other action in hand, so exactly one
    worker acts on it. An action in hand past :func:`action_stale_after` (its worker died) is pending again
    first."""
    now = now or clock.now()
    stale = ScheduleFiring.objects.filter(
        action_state=ActionState.ACTING, action_claimed_at__lt=now - action_stale_after()
    )
    for firing_id in stale.values_list("pk", flat=True):
        release_blessed_action(firing_id, "its worker stopped while acting")
    pending = ScheduleFiring.objects.filter(action_state=ActionState.PENDING)
    for firing_id, model_id in pending.order_by("settled_at", "id").values_list("pk", "schedule__registered_model")[:5]:
        if _take(firing_id, model_id, now):
            return ScheduleFiring.objects.get(pk=firing_id)
    return None


def _take(firing_id: int, model_id: int, now: datetime) -> bool:
    """Pending -> acting, only while no action of the same registered model is in hand: one guarded UPDATE.

    Two claimers of one model's actions at the same instant: on PostgreSQL the model's row lock (FOR UPDATE,
    held to the end of the transaction; the registry's push takes the same one) puts the second after the
    first, and its UPDATE's NOT EXISTS (re-read per statement under READ COMMITTED) then sees the first's
    claim. SQLite has no row locks: its transaction takes the database's write lock when it begins
    (``transaction_mode`` IMMEDIATE, settings.py), so the two run one after the other there as well.
    """
    with transaction.atomic():
        if connection.features.has_select_for_update:
            list(RegisteredModel.objects.select_for_update().filter(pk=model_id).values_list("pk"))
        in_hand = ScheduleFiring.objects.filter(schedule__registered_model_id=model_id, action_state__in=IN_HAND)
        claimed = (
            ScheduleFiring.objects.filter(pk=firing_id, action_state=ActionState.PENDING)
            .exclude(Exists(in_hand))
            .update(action_state=ActionState.ACTING, action_claimed_at=now, action_attempts=F("action_attempts") + 1)
        )
    return bool(claimed)


def release_blessed_action(firing_id: int, why: str) -> None:
    """An action whose doer ended without finishing it: pending again, or given up after ACTION_MAX_ATTEMPTS."""
    firing = ScheduleFiring.objects.filter(pk=firing_id, action_state=ActionState.ACTING).first()
    if firing is None:
        return
    if firing.action_attempts >= ACTION_MAX_ATTEMPTS:
        fields = {"action_state": ActionState.DONE, "blessed_action": f"gave up: {why}"[:500]}
    else:
        fields = {"action_state": ActionState.PENDING, "action_claimed_at": None}
    ScheduleFiring.objects.filter(pk=firing_id, action_state=ActionState.ACTING).update(**fields)


def act_on_blessed(firing_id: int) -> ScheduleFiring:
    """Push a claimed firing's blessed run, and ask for its deploy, as its schedule says; what happened is
    kept on the firing (``deploying`` until the deploy request has ended: :func:`follow_deploys`).

    Run by the worker's action child (``manage.py act_on_blessed``). Pushing again after a lost attempt is
    avoided (a run already holding a version keeps it), and so is asking twice for its deploy.
    """
    firing = ScheduleFiring.objects.select_related("run", "schedule__registered_model").get(pk=firing_id)
    schedule, run = firing.schedule, firing.run
    done, state = [], ActionState.DONE
    try:
        if run is None:
            raise Conflict("its run was deleted")
        if run.registry_version is None:
            run = registry_services.push_to_registry(run)
            audit.record(ACTOR, audit.Action.PUSH, run, changes={"version": run.registry_version})
        done.append(f"pushed as version {run.registry_version}")
        if schedule.on_blessed == OnBlessed.PUSH_AND_DEPLOY:
            refused = _request_deploy(run)
            if refused:
                done.append(f"deploy not started: {refused}")
                _notify_not_deployed(firing, run.registry_version, f"deploy not started: {refused}")
            else:
                state = ActionState.DEPLOYING
    except DomainError as error:
        done.append(f"refused: {error.message}")
    except Exception as error:  # noqa: BLE001 (the run is kept; the failure is shown on its firing)
        logger.exception("schedule %s: acting on blessed firing %s failed", schedule.pk, firing_id)
        done.append(f"failed: {type(error).__name__}: {error}"[:300])
    ScheduleFiring.objects.filter(pk=firing_id, action_state=ActionState.ACTING).update(
        blessed_action="; ".join(done)[:500], action_state=state
    )
    firing.refresh_from_db()
    return firing


def _request_deploy(run: TrainingRun) -> str:
    """Ask the deploy jobs to serve the run's version (on the target the model is served on); why not, or ""."""
    registered = run.registered_model
    deployment = Deployment.objects.filter(registered_model=registered).first()
    if deployment is not None and deployment.pending_action:
        ours = (
            deployment.pending_action == DeploymentAction.DEPLOY and deployment.pending_version == run.registry_version
        )
        if ours:  # asked by an earlier attempt of this action
            return ""
        what = deployment.get_pending_action_display().lower()
        of = f" to version {deployment.pending_version}" if deployment.pending_version else ""
        return f"a {what}{of} of {registered.name} was already pending"
    target = deployment.target if deployment is not None else "local"
    try:
        jobs.request_deploy(registered, run.registry_version, None, target)
    except DomainError as error:  # one became pending meanwhile (the request is guarded), or it cannot serve
        return error.message
    return ""


def follow_deploys() -> int:
    """Record how each scheduled deploy asked for ended, once its request has (guarded: once); how many."""
    deploying = ScheduleFiring.objects.filter(action_state=ActionState.DEPLOYING)
    if not deploying.exists():  # a read: the tick runs every second
        return 0
    followed = 0
    for firing in deploying.select_related("run", "schedule__registered_model"):
        registered = firing.schedule.registered_model
        deployment = deployment_services.current(registered)
        if deployment is not None and deployment.pending_action:
            continue  # still being carried out
        version = firing.run.registry_version if firing.run else None
        served = deployment is not None and deployment.status == Deployment.DEPLOYED and deployment.version == version
        outcome = "deployed" if served else f"deploy failed: {deployment.message if deployment else 'no deployment'}"
        if not ScheduleFiring.objects.filter(pk=firing.pk, action_state=ActionState.DEPLOYING).update(
            action_state=ActionState.DONE, blessed_action=f"{firing.blessed_action}; {outcome}"[:500]
        ):
            continue  # another worker recorded it
        followed += 1
        if served:
            audit.record(ACTOR, audit.Action.DEPLOY, registered, changes={"version": version})
            notifications.notify(
                firing.schedule,
                NotifyEvent.DEPLOYED,
                f"{registered.name} version {version} is deployed",
                {"run_id": firing.run_id, "version": version},
            )
        else:
            _notify_not_deployed(firing, version, outcome)
    return followed


def _notify_not_deployed(firing: ScheduleFiring, version: int | None, why: str) -> None:
    """A scheduled deploy that failed (or could not start): its targets hear of it (the previous version
    keeps serving)."""
    registered = firing.schedule.registered_model
    notifications.notify(
        firing.schedule,
        NotifyEvent.DEPLOY_FAILED,
        f"{registered.name} version {version} was not deployed",
        {"run_id": firing.run_id, "version": version, "stage": "deploy", "reason": why},
    )
