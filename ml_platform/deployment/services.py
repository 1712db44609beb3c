"""Deploy, undeploy and roll back registered model versions; the deployment state and its history.

One deployed version per registered model: deploying a version replaces the
one deployed (the old one answers until the new one is ready). Every action,
failed ones included, is recorded as a :class:`DeploymentEvent`.

Rollback goes back to the version that was deployed before the current one,
read from the history: successful deploys push their version on a stack,
rollbacks pop back to theirs. So deploy v1, deploy v2, deploy v3, rollback,
rollback serves v2 and then v1; a further rollback is refused (nothing was
deployed before v1). Versions that can no longer be served (their run was
deleted) are skipped.

The actions here are synchronous: they return once the version answers at
the endpoint (or fail, leaving the previous version serving), and they run
one at a time (a lock shared by every process on the host). The API and the
pages do not call them: they record a request that the worker carries out
(:mod:`ml_platform.deployment.jobs`), so no web worker waits for a model to load.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlencode

from ml_pipeline.errors import Problem
from ml_platform.core import clock
from ml_platform.core.errors import Conflict, DomainError, Invalid, NotFound, UpstreamFailed
from ml_platform.deployment.models import Deployment, DeploymentEvent, DeploymentState
from ml_platform.deployment.serving_process import DeploymentBusy, serving_lock
from ml_platform.deployment.targets import DeploymentFailed, ModelToServe, TargetStatus, get_target
from ml_platform.registry.models import RegisteredModel
from ml_platform.registry.services import version_run
from ml_platform.training.models import TrainingRun

log = logging.getLogger(__name__)


def serving_name(registered: RegisteredModel) -> str:
    """The model's name at the endpoint: ``p<id>-<project>.<model>``, unique across projects (as in MLflow,
    and project names are unique only per owner); a model deployed before keeps the name it was served as."""
    deployment = current(registered)
    return (
        deployment.serving_name
        if deployment and deployment.serving_name
        else f"{registered.project.unique_name}.{registered.name}"
    )


def current(registered: RegisteredModel) -> Deployment | None:
    return Deployment.objects.filter(registered_model=registered).first()


# -- what a version needs to be served --------------------------------------------------
def _examples_path(run: TrainingRun) -> Path | None:
    uri = ((run.artifacts or {}).get("ExampleGen") or {}).get("uri")
    return Path(uri) / "output" if uri else None


def servable_problem(run: TrainingRun) -> str | None:
    """Why the version cannot be served, or None."""
    path = run.serving_model_path
    if not path:
        return "it has no serving model (its run did not push one)"
    if not Path(path, "saved_model.pb").is_file():
        return f"its serving model is gone from {path}"
    examples = _examples_path(run)
    if examples is None or not examples.is_dir():
        return "its ExampleGen output (needed for the buyers lookup) is gone"
    return None


def model_to_serve(registered: RegisteredModel, version: int) -> tuple[TrainingRun, ModelToServe]:
    run = version_run(registered, version)  # 404 when the registry has no such version
    problem = servable_problem(run)
    if problem:
        raise Conflict(f"Version {version} of {registered.name} cannot be deployed: {problem}")
    buyer_features = (((run.spec or {}).get("features") or {}).get("buyer_tower") or {}).get("features") or []
    return run, ModelToServe(
        serving_name=serving_name(registered),
        version=version,
        model_path=Path(run.serving_model_path),
        examples_path=_examples_path(run),
        buyer_features=list(buyer_features),
        run_id=run.pk,
    )


# -- history ------------------------------------------------------------------------------
def deployed_stack(registered: RegisteredModel) -> list[int]:
    """The versions deployed in turn, as rollbacks see them (the current one last)."""
    stack: list[int] = []
    events = DeploymentEvent.objects.filter(
        registered_model=registered, succeeded=True, action__in=[DeploymentEvent.DEPLOY, DeploymentEvent.ROLLBACK]
    )
    for event in events.order_by("at", "id"):
        if event.action == DeploymentEvent.DEPLOY:
            if not stack or stack[-1] != event.version:
                stack.append(event.version)
        else:
            while stack and stack[-1] != event.version:
                stack.pop()
            if not stack:
                stack.append(event.version)
    return stack


def rollback_version(registered: RegisteredModel, deployment: Deployment | None = None) -> int | None:
    """The version a rollback would deploy now, or None."""
    deployment = deployment if deployment is not None else current(registered)
    if deployment is None or deployment.status != Deployment.DEPLOYED:
        return None
    stack = deployed_stack(registered)
    if stack and stack[-1] == deployment.version:
        stack = stack[:-1]
    runs = {
        run.registry_version: run
        for run in TrainingRun.objects.filter(registered_model=registered, registry_version__in=set(stack))
    }
    for version in reversed(stack):
        if version != deployment.version and version in runs and servable_problem(runs[version]) is None:
            return version
    return None


def _record(registered, action, user, version, previous, target, succeeded=True, message="") -> DeploymentEvent:
    return DeploymentEvent.objects.create(
        registered_model=registered,
        action=action,
        version=version,
        previous_version=previous,
        target=target,
        succeeded=succeeded,
        message=message,
        user=user if getattr(user, "pk", None) else None,
    )


# -- actions ------------------------------------------------------------------------------
@contextmanager
def _exclusive():
    try:
        with serving_lock():
            yield
    except DeploymentBusy as busy:
        raise Conflict(str(busy).capitalize()) from None


def deploy(registered: RegisteredModel, version: int, user, target: str = "local") -> Deployment:
    """Serve ``version`` (replacing the deployed one); returns once it answers.

    NotFound: no such version; Conflict: already deployed, or not servable; Invalid: an unknown or
    unavailable target; UpstreamFailed: the target could not bring it up.
    """
    check_deploy(registered, version, target)
    with _exclusive():
        run, model = check_deploy(registered, version, target)
        return _switch(registered, run, model, user, DeploymentEvent.DEPLOY, target)


def check_deploy(registered: RegisteredModel, version: int, target: str) -> tuple[TrainingRun, ModelToServe]:
    """What deploying ``version`` would serve; refused (see :func:`deploy`) before anything is done."""
    target_impl = get_target(target)
    run, model = model_to_serve(registered, version)
    deployment = current(registered)
    if (
        deployment is not None
        and deployment.status == Deployment.DEPLOYED
        and deployment.version == version
        and deployment.target == target
    ):
        live = target_impl.status(model.serving_name)
        if live.state == TargetStatus.AVAILABLE and live.version == version:
            raise Conflict(f"Version {version} of {registered.name} is already deployed at {deployment.endpoint_url}")
    return run, model


def check_rollback(registered: RegisteredModel) -> int:
    """The version a rollback goes to; Conflict when nothing is deployed or nothing was deployed before."""
    deployment = current(registered)
    if deployment is None or deployment.status != Deployment.DEPLOYED:
        raise Conflict(f"{registered.name} is not deployed: there is nothing to roll back; deploy a version instead")
    version = rollback_version(registered, deployment)
    if version is None:
        raise Conflict(
            f"No earlier version of {registered.name} to roll back to: version "
            f"{deployment.version} is the first one deployed (or the earlier ones "
            f"can no longer be served)"
        )
    return version


def rollback(registered: RegisteredModel, user, version: int | None = None) -> Deployment:
    """Deploy the version that was deployed before the current one (from the history; ``version`` when the
    request chose it already)."""
    with _exclusive():
        deployment = current(registered)
        if version is None or deployment is None or deployment.status != Deployment.DEPLOYED:
            version = check_rollback(registered)
        run, model = model_to_serve(registered, version)
        return _switch(registered, run, model, user, DeploymentEvent.ROLLBACK, deployment.target)


def undeploy(registered: RegisteredModel, user) -> Deployment:
    """Stop serving the model; returns once the endpoint no longer answers for it."""
    with _exclusive():
        deployment = current(registered)
        if deployment is None or deployment.status == Deployment.NONE:
            raise Conflict(f"{registered.name} is not deployed")
        target_impl = get_target(deployment.target)
        name = deployment.serving_name or serving_name(registered)
        was = deployment.version if deployment.status == Deployment.DEPLOYED else None
        try:
            target_impl.undeploy(name)
        except DeploymentFailed as error:
            message = f"Undeploying failed: {error}"
            _record(registered, DeploymentEvent.UNDEPLOY, user, was, was, deployment.target, False, message)
            Deployment.objects.filter(pk=deployment.pk).update(message=message, updated_at=clock.now())
            raise UpstreamFailed(message) from None
        _save(
            deployment,
            status=Deployment.NONE,
            state=DeploymentState.NONE,
            version=None,
            training_run=None,
            endpoint_url="",
            deployed_at=None,
            deployed_by=None,
            message=f"Version {was} undeployed" if was else "Undeployed",
        )
        RegisteredModel.objects.filter(pk=registered.pk).update(deployed_version=None, updated_at=clock.now())
        registered.deployed_version = None
        _record(
            registered,
            DeploymentEvent.UNDEPLOY,
            user,
            was,
            was,
            deployment.target,
            message=f"Version {was} no longer served" if was else "Nothing was serving",
        )
        _forget(target_impl, name, set())
        return deployment


def _save(deployment: Deployment, **fields) -> None:
    for field, value in fields.items():
        setattr(deployment, field, value)
    deployment.save(update_fields=[*fields, "updated_at"])


def _forget(target_impl, name: str, keep: set[int]) -> None:
    try:
        target_impl.forget(name, keep)
    except OSError:  # housekeeping only
        log.warning("could not remove old serving files of %s", name, exc_info=True)


def _switch(registered, run, model: ModelToServe, user, action: str, target: str) -> Deployment:
    """Bring ``model`` up on ``target`` in place of whatever is deployed; state and history follow."""
    target_impl = get_target(target)
    deployment, _ = Deployment.objects.get_or_create(
        registered_model=registered, defaults={"serving_name": model.serving_name, "target": target}
    )
    previous = deployment.version if deployment.status == Deployment.DEPLOYED else None
    previous_target = deployment.target if previous is not None else None
    restore = {f: getattr(deployment, f) for f in ("status", "version", "training_run", "message")}
    verb = "Rolling back to" if action == DeploymentEvent.ROLLBACK else "Deploying"
    _save(deployment, status=Deployment.DEPLOYING, message=f"{verb} version {model.version}")
    try:
        live = target_impl.deploy(model)
    except Exception as error:
        reason = str(error) if isinstance(error, DeploymentFailed) else f"{type(error).__name__}: {error}"
        message = f"{verb} version {model.version} failed: {reason}"
        _record(registered, action, user, model.version, previous, target, False, message)
        if previous is not None:
            _save(
                deployment,
                status=Deployment.DEPLOYED,
                state=DeploymentState.FAILED,
                version=restore["version"],
                training_run=restore["training_run"],
                message=f"{message} (version {previous} is still deployed)",
            )
        else:
            _save(
                deployment,
                status=Deployment.FAILED,
                state=DeploymentState.FAILED,
                version=model.version,
                training_run=run,
                endpoint_url="",
                deployed_at=None,
                message=message,
            )
        if not isinstance(error, DeploymentFailed):
            log.exception("deploying %s version %s failed", model.serving_name, model.version)
        raise UpstreamFailed(message) from None
    if previous_target is not None and previous_target != target:  # one deployed version: leave the old target
        try:
            get_target(previous_target).undeploy(model.serving_name)
        except (DeploymentFailed, DomainError) as error:
            log.warning("could not undeploy %s from %s: %s", model.serving_name, previous_target, error)
    now = clock.now()
    _save(
        deployment,
        status=Deployment.DEPLOYED,
        state=DeploymentState.SERVING,
        version=model.version,
        training_run=run,
        target=target,
        serving_name=model.serving_name,
        endpoint_url=live.endpoint_url,
        deployed_at=now,
        deployed_by=user if getattr(user, "pk", None) else None,
        message=f"Version {model.version} answers at {live.endpoint_url}",
    )
    RegisteredModel.objects.filter(pk=registered.pk).update(deployed_version=model.version, updated_at=now)
    registered.deployed_version = model.version
    what = "Rolled back to" if action == DeploymentEvent.ROLLBACK else "Deployed"
    replaced = f" (replacing version {previous})" if previous is not None and previous != model.version else ""
    _record(
        registered, action, user, model.version, previous, target, message=f"{what} version {model.version}{replaced}"
    )
    _forget(target_impl, model.serving_name, {model.version})
    return deployment


# -- the state the API shows ------------------------------------------------------------
def deployment_state(registered: RegisteredModel, live: bool = True, history: int = 50) -> dict:
    deployment = current(registered)
    name = deployment.serving_name if deployment and deployment.serving_name else serving_name(registered)
    status = deployment.status if deployment else Deployment.NONE
    target = deployment.target if deployment else "local"
    state = {
        "registered_model_id": registered.pk,
        "registered_model_name": registered.name,
        "serving_name": name,
        "status": status,
        "version": deployment.version if deployment else None,
        "training_run_id": deployment.training_run_id if deployment else None,
        "target": target,
        "endpoint_url": deployment.endpoint_url if deployment else "",
        "predict_url": f"{deployment.endpoint_url}:predict" if deployment and deployment.endpoint_url else "",
        "recommend_url": "",
        "deployed_at": deployment.deployed_at if deployment else None,
        "deployed_by": deployment.deployed_by.get_username() if deployment and deployment.deployed_by else None,
        "message": deployment.message if deployment else "",
        "state": deployment.state if deployment else DeploymentState.NONE,
        "pending": _pending(deployment),
        "rollback_version": rollback_version(registered, deployment)
        if not (deployment and deployment.pending_action)
        else None,
        "live": None,
        "history": [],
    }
    if deployment and deployment.endpoint_url and target == "local":
        from ml_platform.deployment.serving_process import base_url

        state["recommend_url"] = f"{base_url()}/recommend?model={quote(name, safe='')}"
    if live and status in (Deployment.DEPLOYED, Deployment.DEPLOYING):
        try:
            state["live"] = get_target(target).status(name).as_dict()
        except (DomainError, DeploymentFailed) as error:
            state["live"] = TargetStatus(TargetStatus.UNREACHABLE, message=str(error)).as_dict()
    events = (
        DeploymentEvent.objects.filter(registered_model=registered)
        .select_related("user")
        .order_by("-at", "-id")[:history]
    )
    state["history"] = [
        {
            "id": e.pk,
            "action": e.action,
            "version": e.version,
            "previous_version": e.previous_version,
            "target": e.target,
            "succeeded": e.succeeded,
            "message": e.message,
            "user": e.user.get_username() if e.user else None,
            "at": e.at,
        }
        for e in events
    ]
    return state


def _pending(deployment: Deployment | None) -> dict | None:
    """The request the worker is carrying out (or has yet to claim), or None."""
    if deployment is None or not deployment.pending_action:
        return None
    return {
        "action": deployment.pending_action,
        "version": deployment.pending_version,
        "target": deployment.pending_target or deployment.target,
        "requested_at": deployment.requested_at,
        "requested_by": deployment.requested_by.get_username() if deployment.requested_by else None,
        "claimed": bool(deployment.claimed_by),
    }


# -- asking the deployed model --------------------------------------------------------------
def recommend(registered: RegisteredModel, buyer_id: str, k: int = 10) -> dict:
    """The deployed version's top ``k`` products for a buyer, asked of the local endpoint (with its token) as
    ``GET /recommend`` answers them. Conflict when nothing is deployed locally; the endpoint's own refusal
    (an unknown buyer, a bad k) is a NotFound or Invalid with its words; UpstreamFailed when it does not answer."""
    from ml_platform.deployment.serving_process import base_url, http_json

    deployment = current(registered)
    if deployment is None or deployment.status != Deployment.DEPLOYED:
        raise Conflict(f"{registered.name} is not deployed: deploy a version to ask it")
    if deployment.target != "local":
        raise Conflict(f"{registered.name} is deployed to {deployment.target}; only the local endpoint is asked here")
    query = urlencode({"model": serving_name(registered), "buyer_id": buyer_id, "k": k})
    answer = http_json("GET", f"{base_url()}/recommend?{query}", timeout=30.0)
    if answer is None:
        raise UpstreamFailed("The serving endpoint does not answer")
    code, body = answer
    if code == 404:
        raise NotFound(body.get("error") or f"unknown buyer '{buyer_id}'")
    if code >= 400:
        raise Invalid(Problem(body.get("field") or "buyer_id", body.get("error") or f"refused ({code})"))
    return body
