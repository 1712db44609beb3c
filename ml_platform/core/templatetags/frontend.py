"""Template tags of the page skeleton: stylesheets, the import map, and JSON shown as text."""

import json

from django import template
from django.templatetags.static import static
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe

from ml_platform.core.frontend import STYLESHEETS
from ml_platform.core.frontend import import_map as build_import_map

register = template.Library()

# Inside <script>, "</script>" or "<!--" would end or change the element: JSON may spell them as escapes.
_SCRIPT_ESCAPES = {ord("<"): "\\u003C", ord(">"): "\\u003E", ord("&"): "\\u0026"}


@register.simple_tag
def import_map() -> str:
    """The import map's JSON, for base.html's ``<script type="importmap">``."""
    return mark_safe(json.dumps(build_import_map(), indent=1).translate(_SCRIPT_ESCAPES))


@register.simple_tag
def stylesheets() -> str:
    """A <link> for each of the pages' stylesheets."""
    return format_html_join("\n  ", '<link rel="stylesheet" href="{}">', ((static(path),) for path in STYLESHEETS))


@register.filter
def pretty_json(value) -> str:
    """A value as indented JSON text (autoescaped like any text): the server renders it, no script does."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
