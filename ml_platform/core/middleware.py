from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequiredMiddleware


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
