"""The API's session authentication: the browser's login, CSRF-checked where there is a login to protect."""

from ninja.security import SessionAuth as NinjaSessionAuth


class SessionAuth(NinjaSessionAuth):
    """A logged-in session, with Django's CSRF check.

    ninja runs the CSRF check before it looks at the session, so over HTTP (Django's test client skips
    the check) a POST without credentials, or with a revoked token, answered 403 "CSRF check Failed"
    instead of 401. A request with no logged-in session has no login for a forged request to ride on:
    it is left unauthenticated, and answers 401 as any request without credentials does.
    """

    def __call__(self, request):
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)


session_auth = SessionAuth()
