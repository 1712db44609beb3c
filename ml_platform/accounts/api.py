"""Personal API tokens: issued from a logged-in session, used as ``Authorization: Bearer``."""

from datetime import datetime

from django.db import transaction
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from pydantic import Field

from ml_platform.accounts.auth import session_auth
from ml_platform.accounts.models import ApiToken
from ml_platform.audit import services as audit
from ml_platform.core.errors import refusals

router = Router(tags=["tokens"])


class TokenIn(Schema):
    name: str = Field(min_length=1, max_length=100, description="What the token is for ('laptop', 'CI')")


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None


class IssuedTokenOut(TokenOut):
    token: str


# Issuing a token needs the browser session: a leaked token must not mint more.
@router.post("/tokens/", response={201: IssuedTokenOut, **refusals(400, 422)}, auth=session_auth)
def issue_token(request, payload: TokenIn):
    with transaction.atomic():
        token, raw = ApiToken.objects.issue(request.user, payload.name)
        audit.record(request, audit.Action.TOKEN_ISSUE, token, changes={"name": token.name})
    return Status(201, {**TokenOut.model_validate(token, from_attributes=True).model_dump(), "token": raw})


@router.get("/tokens/", response={200: list[TokenOut], **refusals()})
def list_tokens(request):
    return ApiToken.objects.filter(user=request.auth)


@router.delete("/tokens/{token_id}/", response={204: None, **refusals(404, 422)})
def revoke_token(request, token_id: int):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.auth)
    with transaction.atomic(), audit.recording(request, audit.Action.TOKEN_REVOKE, token, changes={"name": token.name}):
        token.delete()
    return Status(204, None)
