"""Personal API tokens: issued from a logged-in session, used as ``Authorization: Bearer``."""

from datetime import datetime

from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from ninja.security import django_auth

from ml_platform.accounts.models import ApiToken

router = Router(tags=["tokens"])


class TokenIn(Schema):
    name: str


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None


class IssuedTokenOut(TokenOut):
    token: str


# Issuing a token needs the browser session: a leaked token must not mint more.
@router.post("/tokens/", response={201: IssuedTokenOut}, auth=django_auth)
def issue_token(request, payload: TokenIn):
    token, raw = ApiToken.objects.issue(request.user, payload.name)
    return Status(201, {**TokenOut.model_validate(token, from_attributes=True).model_dump(), "token": raw})


@router.get("/tokens/", response=list[TokenOut])
def list_tokens(request):
    return ApiToken.objects.filter(user=request.auth)


@router.delete("/tokens/{token_id}/", response={204: None})
def revoke_token(request, token_id: int):
    get_object_or_404(ApiToken, pk=token_id, user=request.auth).delete()
    return Status(204, None)
