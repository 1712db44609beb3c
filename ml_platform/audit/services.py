"""Recording the audit trail: who did what to which object, when and from where.

API functions and views call :func:`record` once, after their change
succeeded (inside its transaction where there is one), so a refused or failed
action leaves no event. A delete describes its object while it still has its
id, and writes the event only once the block has succeeded::

    with transaction.atomic(), audit.recording(request, audit.Action.DELETE, dataset):
        dataset.delete()

Work done without a request names a system actor (``WORKER``,
``remote_runner(request)``). Any model with a ``project`` lands in that
project's trail; schedules, when they exist, record ``Action.SCHEDULE_*``
against themselves. What changed is kept small and never holds a
secret: values under secret-sounding keys, URL passwords and API tokens are
masked before anything is written.
"""

from __future__ import annotations

import ipaddress
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import models

from ml_pipeline.redact import MASK, redact_text
from ml_platform.audit.models import AuditEvent
from ml_platform.projects.models import Project

Action = AuditEvent.Action
Via = AuditEvent.Via

HISTORY_SHOWN = 20
# A key naming a secret: its value is never kept, whatever it is.
SECRET_KEY_RE = re.compile(
    r"pass(word|wd|phrase)?$|pwd$|secret|token|api_?key|credential|private_?key|key_hash"
    r"|authorization|cookie|session",
    re.IGNORECASE,
)
# Secrets inside a string, besides the URL and DSN passwords ml_pipeline.redact masks: other secret-named
# parameters (token=..., api_key=...) and raw API tokens.
PARAM_SECRET_RE = re.compile(r"(?P<head>\b(?:passwd|pwd|secret|token|api_?key)\s*=\s*)[^&;\s]*", re.IGNORECASE)
RAW_TOKEN_RE = re.compile(r"\bmlp_[A-Za-z0-9_-]{8,}")
MAX_CHANGES_CHARS = 4000  # the whole JSON; bigger values are replaced by a note of their size
MAX_VALUE_CHARS = 500


@dataclass(frozen=True)
class Actor:
    """Who did it: a user (through a session or a named API token) or a system actor."""

    label: str
    via: str
    user: Any = None
    token_name: str = ""
    address: str | None = None


WORKER = Actor("worker", Via.SYSTEM)


def remote_runner(request) -> Actor:
    """A runner on another machine, authenticated by its run's webhook signature."""
    return Actor("remote runner", Via.SYSTEM, address=client_address(request))


def client_address(request) -> str | None:
    """The client's IP address.

    ``REMOTE_ADDR``, unless that is one of ``TRUSTED_PROXIES``: then
    ``X-Forwarded-For`` is read from the right (each proxy appends the address
    it was connected from), skipping trusted proxies, and the first other
    address is the client. Anyone can send the header, so it is believed only
    from a proxy an administrator listed.
    """
    remote = _ip(request.META.get("REMOTE_ADDR", ""))
    trusted = settings.TRUSTED_PROXIES
    if remote is None or not _is_trusted(remote, trusted):
        return str(remote) if remote else None
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:
            break  # a malformed entry: nothing to its left can be believed
        if not _is_trusted(address, trusted):
            return str(address)
    return str(remote)


def _ip(text: str):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _is_trusted(address, networks) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def actor_of(who) -> Actor:
    """The actor of a request (its user, and the token it came with), an :class:`Actor`, or a user."""
    if isinstance(who, Actor):
        return who
    if hasattr(who, "META"):  # an HttpRequest
        token = getattr(who, "api_token", None)
        user = who.user if getattr(who.user, "is_authenticated", False) else None
        if user is None:
            raise ValueError("record() needs an authenticated request or a system actor")
        return Actor(
            user.get_username(),
            Via.TOKEN if token else Via.SESSION,
            user=user,
            token_name=token.name if token else "",
            address=client_address(who),
        )
    if getattr(who, "pk", None) is not None:  # a user acting outside a request (a management command)
        return Actor(who.get_username(), Via.SYSTEM, user=who)
    raise TypeError(f"not a request, an actor or a user: {who!r}")


def record(request_or_actor, action: str, obj: models.Model, *, changes: dict | None = None) -> AuditEvent:
    """Write one event: ``action`` done to ``obj`` by the request's user (or an actor); ``changes`` masked."""
    event = _event(request_or_actor, action, obj, changes)
    event.save()
    return event


@contextmanager
def recording(request_or_actor, action: str, obj: models.Model, *, changes: dict | None = None):
    """Record ``action`` once the block has succeeded, describing ``obj`` as it was before (for deletes)."""
    event = _event(request_or_actor, action, obj, changes)
    yield event
    event.save()


def _event(request_or_actor, action: str, obj: models.Model, changes: dict | None) -> AuditEvent:
    if action not in Action.values:
        raise ValueError(f"unknown audit action {action!r}")
    if obj.pk is None:
        raise ValueError("an object without an id (record a delete with recording())")
    actor = actor_of(request_or_actor)
    project = obj if isinstance(obj, Project) else getattr(obj, "project", None)
    return AuditEvent(
        actor=actor.user,
        actor_label=actor.label[:150],
        via=actor.via,
        token_name=actor.token_name[:100],
        address=actor.address,
        action=action,
        object_type=obj._meta.label_lower,
        object_id=obj.pk,
        object_label=str(obj)[:200],
        project_id=project.pk if project else None,
        project_label=str(project)[:100] if project else "",
        changes=safe_changes(changes),
    )


# --------------------------------------------------------------------------- what changed


def safe_changes(changes: dict | None) -> dict:
    """``changes`` as JSON with every secret masked, each large value replaced by a note of its size."""
    if not changes:
        return {}
    plain = json.loads(json.dumps(changes, default=str))
    masked = {str(key): _mask(key, value) for key, value in plain.items()}
    if len(json.dumps(masked)) <= MAX_CHANGES_CHARS:
        return masked
    return {key: _shortened(value) for key, value in masked.items()}


def _mask(key, value):
    if isinstance(key, str) and SECRET_KEY_RE.search(key) and value not in (None, ""):
        return MASK
    if isinstance(value, dict):
        return {k: _mask(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(None, v) for v in value]
    if isinstance(value, str):
        return mask_secrets(value)
    return value


def mask_secrets(text: str) -> str:
    """The text with URL and DSN passwords, other secret parameters and raw API tokens masked."""
    text = PARAM_SECRET_RE.sub(lambda m: f"{m.group('head')}{MASK}", redact_text(text))
    return RAW_TOKEN_RE.sub(f"mlp_{MASK}", text)


def _shortened(value):
    size = len(json.dumps(value))
    return value if size <= MAX_VALUE_CHARS else f"({size:,} characters, not kept)"


# --------------------------------------------------------------------------- reading


def events_for(obj: models.Model):
    """The object's events, newest first (answered from the (object type, object id, -created_at) index)."""
    return AuditEvent.objects.filter(object_type=obj._meta.label_lower, object_id=obj.pk)


def history(obj: models.Model) -> dict:
    """What a page's History section shows: the newest events and how many there are.

    A project's history is the whole project's trail; any other object's is its own.
    """
    events = AuditEvent.objects.filter(project=obj) if isinstance(obj, Project) else events_for(obj)
    return {"events": list(events[:HISTORY_SHOWN]), "count": events.count(), "shown": HISTORY_SHOWN}
