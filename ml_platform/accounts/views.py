"""The login page's answer to a locked-out (username, address) pair (django-axes' AXES_LOCKOUT_CALLABLE)."""

from django.conf import settings
from django.shortcuts import render


def lockout_message() -> str:
    minutes = settings.AXES_COOLOFF_TIME.total_seconds() / 60
    wait = f"{minutes:g} minute{'s' if minutes != 1 else ''}"
    return (
        f"Too many failed logins for this account from your address: logging in is refused for {wait}. "
        f"Wait, then try again."
    )


def locked_out(request, original_response=None, credentials=None):
    """The login form again, saying why it refuses (429), rather than a bare 403 page."""
    context = {"locked_out": lockout_message(), "next": request.POST.get("next", "")}
    return render(request, "core/login.html", context, status=429)
