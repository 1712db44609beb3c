"""Template filters of the feature config form (modeling/_feature_form.html)."""

from django import template

from ml_pipeline.config.features import TimestampFeature
from ml_platform.core.forms import get

register = template.Library()
DEFAULT_PERIODS = TimestampFeature.model_fields["periods"].default


@register.filter
def tower_features(config, tower: str) -> list:
    """A feature config's ``<tower>_tower.features`` (empty when the form has none yet)."""
    return get(config, f"{tower}_tower.features") or []


@register.filter
def tower_crosses(config, tower: str) -> list:
    return get(config, f"{tower}_tower.crosses") or []


@register.filter
def chosen_periods(feature) -> list:
    """A timestamp feature's periods, or the ones it gets when none are given."""
    return (feature or {}).get("periods") or list(DEFAULT_PERIODS)
