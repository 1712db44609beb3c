"""The JSON API under /api/, with OpenAPI docs at /api/docs.

Every endpoint requires a logged-in session (with CSRF, as for any form) or a
personal token (``Authorization: Bearer mlp_...``); so do the schema and the
docs. Every error answers the same shape: ``{"error": "...", "errors":
[{"field": ..., "message": ...}]}``; the domain errors services raise
(ml_platform.core.errors) are mapped to their status codes here, once.
"""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import HttpBearer

from ml_pipeline.errors import ConfigError, DataError, Problem
from ml_platform.accounts.api import router as tokens_router
from ml_platform.accounts.auth import session_auth
from ml_platform.accounts.models import ApiToken
from ml_platform.audit.api import router as audit_router
from ml_platform.core.errors import (
    ApiError,
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    UpstreamFailed,
    error_body,
    problems_from_ninja,
    shown_problems,
)
from ml_platform.core.parser import JsonObjectParser
from ml_platform.datasets.api import router as datasets_router
from ml_platform.deployment.api import router as deployment_router
from ml_platform.experiments.api import router as experiments_router
from ml_platform.modeling.api import router as modeling_router
from ml_platform.projects.api import router as projects_router
from ml_platform.registry.api import router as registry_router
from ml_platform.runners.api import router as runners_router
from ml_platform.schedules.api import router as schedules_router
from ml_platform.schedules.webhook import router as schedule_webhook_router
from ml_platform.training.api import router as training_router
from ml_platform.training.webhooks import router as webhooks_router


class TokenAuth(HttpBearer):
    def authenticate(self, request, token):
        found = ApiToken.objects.authenticate_token(token)
        if found is None:
            return None
        request.user = found.user
        request.api_token = found  # the audit trail names the token an action came with
        return found.user


token_auth = TokenAuth()
UNAUTHENTICATED = "Authentication required: log in or send 'Authorization: Bearer <token>'"


def session_or_token(view):
    """The schema and docs name every endpoint: for a logged-in user, or a script or code generator with a token.

    Without either a browser is sent to the login page; a token that is not (or no longer) valid answers 401.
    """

    @wraps(view)
    def guarded(request, *args, **kwargs):
        if request.user.is_authenticated or token_auth(request) is not None:
            return view(request, *args, **kwargs)
        if "Authorization" in request.headers:
            return api.create_response(request, error_body(UNAUTHENTICATED), status=401)
        return redirect_to_login(request.get_full_path())

    return guarded


api = NinjaAPI(
    title="ML Platform API",
    version="1",
    description="Projects, datasets, feature and model configs, experiments, training runs, the model registry "
    "and deployments of the ML Platform.",
    auth=[token_auth, session_auth],
    docs_url="/docs",
    docs_decorator=session_or_token,
    parser=JsonObjectParser(),
)


@api.exception_handler(NinjaValidationError)
def on_request_invalid(request, exc):
    return api.create_response(request, error_body("Invalid input", problems_from_ninja(exc.errors)), status=422)


@api.exception_handler(ConfigError)
def on_config_invalid(request, exc):
    return api.create_response(request, error_body("Invalid configuration", exc.problems), status=422)


@api.exception_handler(DataError)
def on_data_unusable(request, exc):
    return api.create_response(request, error_body("The data cannot be used", shown_problems(exc)), status=422)


@api.exception_handler(DjangoValidationError)
def on_model_invalid(request, exc):
    if hasattr(exc, "message_dict"):
        problems = [Problem(f, m) for f, messages in exc.message_dict.items() for m in messages]
    else:
        problems = [Problem("", m) for m in exc.messages]
    return api.create_response(request, error_body("Invalid input", problems), status=422)


@api.exception_handler(ProtectedError)
@api.exception_handler(RestrictedError)
def on_still_referenced(request, exc):
    referencing = getattr(exc, "protected_objects", None) or exc.restricted_objects
    users = sorted({f"{obj._meta.verbose_name} '{obj}'" for obj in referencing})
    return api.create_response(request, error_body(f"Still in use by {', '.join(users)}"), status=409)


# Each domain error's status code (ml_platform.core.errors); any other DomainError is a plain 400.
DOMAIN_STATUS = {NotFound: 404, Conflict: 409, Invalid: 422, Forbidden: 403, UpstreamFailed: 502}


@api.exception_handler(DomainError)
def on_domain_error(request, exc):
    status = next((code for kind, code in DOMAIN_STATUS.items() if isinstance(exc, kind)), 400)
    return api.create_response(request, error_body(exc.message, exc.problems), status=status)


@api.exception_handler(ApiError)
def on_api_error(request, exc):
    return api.create_response(request, error_body(exc.message, exc.problems), status=exc.status)


@api.exception_handler(Http404)
def on_not_found(request, exc):
    return api.create_response(request, error_body(str(exc) or "Not found"), status=404)


@api.exception_handler(AuthenticationError)
def on_unauthenticated(request, exc):
    return api.create_response(request, error_body(UNAUTHENTICATED), status=401)


@api.exception_handler(HttpError)
def on_http_error(request, exc):
    if isinstance(exc.__cause__, ApiError):  # the body parser's, which ninja wraps in "Cannot parse request body"
        return on_api_error(request, exc.__cause__)
    return api.create_response(request, error_body(str(exc)), status=exc.status_code)


api.add_router("", tokens_router)
api.add_router("", projects_router)
api.add_router("", datasets_router)
api.add_router("", modeling_router)
api.add_router("", webhooks_router)
api.add_router("", training_router)
api.add_router("", experiments_router)
api.add_router("", registry_router)
api.add_router("", deployment_router)
api.add_router("", runners_router)
api.add_router("", schedules_router)
api.add_router("", schedule_webhook_router)
api.add_router("", audit_router)
