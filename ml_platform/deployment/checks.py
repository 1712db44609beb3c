"""System checks for the serving endpoint's settings (``manage.py check`` and every start)."""

from django.core import checks

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@checks.register(checks.Tags.security)
def serving_off_loopback_needs_a_token(app_configs, **kwargs):
    from ml_platform.deployment import serving_process

    host = serving_process.serving_host()
    if host in LOOPBACK or serving_process.serving_token():
        return []
    return [
        checks.Warning(
            f"SERVING_HOST is {host!r} but SERVING_TOKEN is empty: anyone who reaches the serving port may query "
            "the deployed models",
            hint="set SERVING_TOKEN (clients then send 'Authorization: Bearer <token>'), or keep SERVING_HOST on loopback",
            id="deployment.W001",
        )
    ]


@checks.register()
def serving_limits_are_positive(app_configs, **kwargs):
    from ml_platform.deployment import serving_process

    try:
        options = serving_process.server_options()
    except (TypeError, ValueError) as error:
        return [checks.Error(f"the serving limits are not numbers: {error}", id="deployment.E001")]
    return [
        checks.Error(f"{name} must be at least 1, not {value}", id="deployment.E001")
        for name, value in (
            ("SERVING_MAX_BODY_BYTES", options.max_body_bytes),
            ("SERVING_MAX_INSTANCES", options.max_instances),
        )
        if value < 1
    ]
