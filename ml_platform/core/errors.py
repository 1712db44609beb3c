"""The platform's domain errors, and the API's single error shape: ``{"error": "...", "errors": [{"field", "message"}]}``.

Services, the worker, management commands and the scheduler raise and catch the domain errors below
(and ``ml_pipeline.errors.ConfigError`` / ``DataError`` for bad configurations and unusable data); they know
nothing of HTTP. ``ml_platform.api`` maps each one to its status code, once. ``ApiError`` is left for the
refusals that only exist over HTTP: a request body that is not JSON, a webhook's signature.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

from django.conf import settings
from ninja import Schema

from ml_pipeline.errors import DataError, Problem, error_location, problem_from_error_item

log = logging.getLogger(__name__)

# The id of the request being answered (ml_platform.core.middleware.RequestIdMiddleware sets it; "" outside one).
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")


class DomainError(Exception):
    """A rule of the platform refused something; ``message`` is for a person, ``problems`` name the fields."""

    def __init__(self, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.message = message
        self.problems = problems or []


class NotFound(DomainError):
    """The object does not exist (or belongs to a project the user cannot see)."""


class Conflict(DomainError):
    """The object's state forbids it now: a name taken, a run still going, a version already deployed."""


class Invalid(DomainError):
    """The input is wrong in a way only the platform can tell (no such user, a file DuckDB cannot read)."""

    def __init__(self, problems: list[Problem] | Problem, message: str = "Invalid input"):
        super().__init__(message, [problems] if isinstance(problems, Problem) else list(problems))


class Forbidden(DomainError):
    """The user may see the object but not do this to it (a plain member changing an owner's setting)."""


class UpstreamFailed(DomainError):
    """A service the platform drives (the serving endpoint) failed to do what it was asked."""


class ApiError(Exception):
    """An HTTP-only refusal: a status code and a readable message."""

    def __init__(self, status: int, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []


class FieldError(Schema):
    field: str
    message: str


class ErrorResponse(Schema):
    """Every refusal of the API: what went wrong, and each bad field when there are some."""

    error: str
    errors: list[FieldError] = []


def refusals(*statuses: int) -> dict[int, type[ErrorResponse]]:
    """The error answers an operation declares in OpenAPI: 401 (every operation needs credentials) and ``statuses``.

    ``response={200: RunDetail, **refusals(404, 409)}``.
    """
    return {status: ErrorResponse for status in sorted({401, *statuses})}


def error_body(message: str, problems: list[Problem] | None = None) -> dict:
    body = {"error": message}
    if problems:
        body["errors"] = [{"field": p.field, "message": p.message} for p in problems]
    return body


def problems_from_ninja(errors: list[dict]) -> list[Problem]:
    """Ninja reports ``loc`` as ("body", "<param name>", "field", ...); keep the field part."""
    problems = []
    for item in errors:
        loc = list(error_location(item))
        if loc and loc[0] in ("body", "query", "path", "form", "file"):
            source = loc.pop(0)
            if source == "body" and len(loc) > 1:
                loc.pop(0)  # the view's parameter name, e.g. "payload"
        problems.append(problem_from_error_item(tuple(loc), item.get("msg", "invalid")))
    return problems


def _without_server_paths(message: str) -> str:
    """A message with the server's data folder (uploads, databases) left out of any path in it."""
    for folder in {str(settings.MEDIA_ROOT), str(settings.DATA_DIR)}:
        message = message.replace(folder + "/", "").replace(folder, "the data folder")
    return message


def shown_problems(error: DataError) -> list[Problem]:
    """What a user is shown of unusable data: the message in words, never the server's paths.

    What the reading library said (``detail``: paths, SQL, hints) goes to the server log under the request's
    id, which the message then names, so an administrator can find it.
    """
    problems = [Problem(p.field, _without_server_paths(p.message)) for p in error.problems]
    if getattr(error, "detail", ""):
        request_id = REQUEST_ID.get() or "none"
        log.warning("unreadable data (request %s): %s: %s", request_id, error, error.detail)
        problems = [
            Problem(p.field, f"{p.message} (details in the server log, request {request_id})") for p in problems
        ]
    return problems
