"""System checks for the runner settings (``manage.py check`` and every start): a default runner that is not
configured, or a fallback order that is not one, stops the start naming what is wrong."""

from django.conf import settings
from django.core import checks


@checks.register()
def default_runner_is_configured(app_configs, **kwargs):
    from ml_pipeline.errors import ConfigError
    from ml_platform.runners import config

    errors = []
    try:
        config.require(settings.DEFAULT_RUNNER, "DEFAULT_RUNNER")
    except ConfigError as error:
        errors.append(checks.Error(f"DEFAULT_RUNNER: {error.problems[0].message}", id="runners.E001"))
    try:
        config.fallback_order(None)
    except ConfigError as error:
        errors.append(checks.Error(f"GPU_FALLBACK_ORDER: {error.problems[0].message}", id="runners.E002"))
    return errors
