"""Template tags of the editing forms (ml_platform.core.forms): inputs' names, values and errors."""

from django import template
from django.utils.html import format_html, format_html_join

from ml_platform.core.forms import get

register = template.Library()


def _name(parts) -> str:
    return "".join(str(p) for p in parts)


@register.simple_tag
def field_name(*parts) -> str:
    """An input's name from pieces: ``{% field_name prefix "[" forloop.counter0 "].kind" %}``."""
    return _name(parts)


@register.simple_tag
def field_errors(errors, *parts) -> str:
    """The problems reported for the field named by ``parts`` (joined), next to its input."""
    name = _name(parts)
    messages = errors.at(name) if errors else []
    if not messages:
        return ""
    return format_html(
        '<span class="field-errors" data-errors-for="{}">{}</span>',
        name,
        format_html_join("", '<span class="field-error" role="alert">{}</span>', ((m,) for m in messages)),
    )


@register.simple_tag
def value_at(data, *parts) -> str:
    """The form's value for the field named by ``parts``, as an input holds it (lists comma-separated)."""
    value = get(data, _name(parts))
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


@register.simple_tag(takes_context=True)
def row_button(context, action, *parts, form, label="Remove", button_id=""):
    """The button that adds (``action="add"``) or removes a row of an editor form.

    The server answers with the whole form again, which replaces ``#<form>``: the row lists of every editor
    (filters, mapping, features, crosses, transforms, layers) share this one definition.
    """
    return format_html(
        '<button type="submit" class="{}" name="_action" value="{}:{}"{} hx-post="{}" hx-target="#{}" '
        'hx-select="#{}" hx-swap="outerHTML">{}</button>',
        "secondary" if action == "add" else "link remove",
        action,
        _name(parts),
        format_html(' id="{}"', button_id) if button_id else "",
        context["form_url"],
        form,
        form,
        label,
    )


@register.filter
def is_in(value, container) -> bool:
    return value in (container or [])


@register.filter
def dict_get(mapping, key):
    """``mapping[key]`` for a key held in a variable (None when absent)."""
    return (mapping or {}).get(key) if isinstance(mapping, dict) else None
