import uuid
from http import HTTPStatus

from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequiredMiddleware
from django.http import JsonResponse

from ml_platform.core.errors import REQUEST_ID, error_body


class RequestIdMiddleware:
    """Every request gets an id, answered as ``X-Request-ID`` and named in the log lines written for it.

    An answer that leaves details out (an unreadable file) names the id, so its full text can be found in the log.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = uuid.uuid4().hex[:12]
        token = REQUEST_ID.set(request.request_id)
        try:
            response = self.get_response(request)
        finally:
            REQUEST_ID.reset(token)
        response["X-Request-ID"] = request.request_id
        return response


class LoginRequiredMiddleware(DjangoLoginRequiredMiddleware):
    """Every page needs a login; the JSON API answers 401 itself instead of redirecting.

    The API authenticates with a session *or* a personal token, so it cannot be
    judged by the session alone; its own auth (ml_platform.api) covers every
    endpoint and answers 401 with a JSON body.
    """

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class ApiErrorShapeMiddleware:
    """Errors under /api/ that Django or django-ninja answer by themselves get the API's one error shape.

    The API's handlers (ml_platform.api) shape every error an endpoint raises; what never reaches them is
    answered in plain text or HTML: ninja's 405 for a method a path does not have, Django's 404 for a
    path no endpoint has, its 500 page. A client of the API gets JSON from every answer.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            request.path_info.startswith("/api/")
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return self._shaped(request, response)
        return response

    @staticmethod
    def _shaped(request, response) -> JsonResponse:
        status = response.status_code
        if status == 405:
            message = f"Method {request.method} is not allowed here (allowed: {response.get('Allow', 'none')})"
        elif status == 404:
            message = f"No API endpoint at {request.path_info}"
        else:  # the status's name only: a 500 page's text is never passed on
            message = HTTPStatus(status).phrase if status in set(HTTPStatus) else f"Error {status}"
        shaped = JsonResponse(error_body(message), status=status)
        if response.has_header("Allow"):
            shaped["Allow"] = response["Allow"]
        return shaped
