"""The pages' editing forms: field names are the API's field paths, and refusals are the API's problems.

A form input is named as the API names the field in its answers (``mapping.buyer_id``,
``filters.conditions[0].value``), so the nested JSON the API would get is rebuilt from the posted form
(:func:`nested`), checked by the API's own input schema and saved by the same service, and each
``Problem`` the schema or the service reports is shown next to the input of the same name
(:class:`FieldErrors`). A page's "live" panel asks the same service for the draft it would save (the
services' ``draft_*`` functions: the same checks, nothing written): it shows what saving would give, or
why saving would be refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from django.db.models import ProtectedError, RestrictedError
from django.http import QueryDict

from ml_pipeline.errors import ConfigError, DataError, Problem, validate_model
from ml_platform.core.errors import DomainError, shown_problems

T = TypeVar("T")

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
ACTION_FIELD = "_action"  # a button's name: "add:<list path>" or "remove:<item path>" edits the form, not the object


def _parts(name: str) -> list[str | int]:
    return [int(index) if index else key for key, index in _PART.findall(name)]


def _put(tree: dict, parts: list[str | int], value: Any) -> None:
    node: Any = tree
    for part, after in zip(parts, parts[1:]):
        if isinstance(part, int):
            while len(node) <= part:
                node.append(None)
            if node[part] is None:
                node[part] = [] if isinstance(after, int) else {}
            node = node[part]
        else:
            node = node.setdefault(part, [] if isinstance(after, int) else {})
    last = parts[-1]
    if isinstance(last, int):
        while len(node) <= last:
            node.append(None)
        node[last] = value
    else:
        node[last] = value


def _compact(value: Any) -> Any:
    """Lists without their holes (a removed row), dicts without their absent values."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(v) for v in value if v is not None]
    return value


def nested(form: QueryDict, *, lists: tuple[str, ...] = ()) -> dict:
    """The posted form as the API's JSON: an empty input is a field left out.

    A name ending in ``[]`` (``periods[]``, a group of checkboxes) collects every value sent, and a name in
    ``lists`` is split on commas (``filters.include_buyers``: "c1, c2"); anything else is its last value.
    """
    tree: dict = {}
    for name in form:
        if name in (ACTION_FIELD, "csrfmiddlewaretoken") or name.startswith("_"):
            continue
        if name.endswith("[]"):
            _put(tree, _parts(name[:-2]), [v for v in form.getlist(name) if v != ""])
            continue
        value = form.getlist(name)[-1].strip()
        if value == "":
            continue
        if name in lists:
            value = [item.strip() for item in value.split(",") if item.strip()]
        _put(tree, _parts(name), value)
    return _compact(tree)


def get(tree: Any, path: str, default: Any = None) -> Any:
    """The value at a field path of nested JSON (``buyer_tower.features[0].kind``), or ``default``."""
    node = tree
    for part in _parts(path):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return default
    return node


def apply_action(tree: dict, action: str, new_item: Callable[[str], Any]) -> dict:
    """A form-editing button: ``add:<list path>`` appends ``new_item(path)``, ``remove:<item path>`` drops it."""
    verb, _, path = action.partition(":")
    parts = _parts(path)
    if verb == "add" and parts:
        node = get(tree, path)
        if not isinstance(node, list):
            _put(tree, parts, [])
            node = get(tree, path)
        node.append(new_item(path))
    elif verb == "remove" and parts and isinstance(parts[-1], int):
        container = get(tree, path.rsplit("[", 1)[0])
        if isinstance(container, list) and parts[-1] < len(container):
            container.pop(parts[-1])
    return tree


def number_or_text(value: Any) -> Any:
    """A filter value as typed into a text input: a number when it reads as one, else the text as written."""
    if isinstance(value, list):
        return [number_or_text(v) for v in value]
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?(\d+\.\d*|\.\d+)([eE]-?\d+)?", value):
        return float(value)
    return value


def in_use_message(error: ProtectedError | RestrictedError) -> str:
    """Why an object that others refer to cannot be deleted (the API's 409 says the same)."""
    referencing = getattr(error, "protected_objects", None) or error.restricted_objects
    users = sorted({f"{obj._meta.verbose_name} '{obj}'" for obj in referencing})
    return f"Still in use by {', '.join(users)}"


class Refused(Exception):
    """What a page shows for a refused save: the API's message, and its problems by field."""

    def __init__(self, message: str, problems: list[Problem]):
        super().__init__(message)
        self.message = message
        self.problems = problems


REFUSALS = (ConfigError, DataError, DomainError, ProtectedError, RestrictedError)


def refusal(error: Exception) -> Refused:
    """The message and problems of the API's answer to the same error (ml_platform.api's handlers)."""
    if isinstance(error, ConfigError):
        return Refused("Invalid configuration", error.problems)
    if isinstance(error, DataError):
        return Refused("The data cannot be used", shown_problems(error))  # no server paths; details logged
    if isinstance(error, (ProtectedError, RestrictedError)):
        return Refused(in_use_message(error), [])
    return Refused(error.message, error.problems)


def checked(schema: type[T], data: dict) -> T:
    """``data`` through the API's input schema, problems named as the API names them."""
    return validate_model(schema, data)


class FieldErrors:
    """Problems by field path, for templates: ``errors.for_field.mapping.buyer_id`` is not usable with dots,
    so templates call the ``field_errors`` tag (core/templatetags/forms.py) with the input's name."""

    def __init__(self, message: str = "", problems: list[Problem] = ()):
        self.message = message
        self.problems = list(problems)

    def __bool__(self) -> bool:
        return bool(self.message or self.problems)

    def at(self, field: str) -> list[str]:
        return [p.message for p in self.problems if p.field == field]

    @classmethod
    def of(cls, refused: Refused) -> FieldErrors:
        return cls(refused.message, refused.problems)
