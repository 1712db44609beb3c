"""The personal API tokens page: issue one (its value shown once, on the answer that made it), list, revoke.

The same actions as the tokens API (ml_platform.accounts.api), audited the same way; issuing needs the
browser session there too.
"""

from django.contrib import messages
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from ml_platform.accounts.api import TokenIn
from ml_platform.accounts.models import ApiToken
from ml_platform.audit import services as audit
from ml_platform.core import forms


@require_http_methods(["GET", "POST"])
def tokens_page(request):
    issued = None
    errors = forms.FieldErrors()
    if request.method == "POST" and request.POST.get("revoke", "").isdigit():
        token = get_object_or_404(ApiToken, pk=int(request.POST["revoke"]), user=request.user)
        name = token.name
        with transaction.atomic(), audit.recording(request, audit.Action.TOKEN_REVOKE, token, changes={"name": name}):
            token.delete()
        messages.success(request, f"Revoked the token '{name}': scripts using it are refused from now on")
        return redirect("tokens")
    if request.method == "POST":
        try:
            payload = forms.checked(TokenIn, forms.nested(request.POST))
            with transaction.atomic():
                token, raw = ApiToken.objects.issue(request.user, payload.name)
                audit.record(request, audit.Action.TOKEN_ISSUE, token, changes={"name": token.name})
        except forms.REFUSALS as error:
            errors = forms.FieldErrors.of(forms.refusal(error))
        else:
            issued = {"token": token, "raw": raw}
    response = render(
        request,
        "accounts/tokens.html",
        {"tokens": ApiToken.objects.filter(user=request.user), "issued": issued, "errors": errors},
    )
    response["Cache-Control"] = "no-store"  # the one answer holding a token's value is never kept
    return response
