"""Errors that name the field or column at fault.

Pydantic already reports per-field errors for the shape of a config; the
checks that need context (a column that must exist in a source, a cross that
must refer to a tower feature) raise :class:`ConfigError` with the same
``field`` + ``message`` pairs, so the API can answer both the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ConfigError(ValueError):
    """One or more problems with a config, each naming its field."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class DataError(ValueError):
    """The data itself is unusable (unreadable file, empty after filters, ...).

    ``detail`` is what the reading library said (paths, SQL and all): for the
    server's log, never for an answer.
    """

    def __init__(self, message: str, field: str = "", detail: str = ""):
        self.problems = [Problem(field, message)]
        self.detail = detail
        super().__init__(str(self.problems[0]))


# Tags of discriminated unions ("dense", "numeric", ...). Pydantic puts the tag
# into an error's location after the list index; we drop it so the path reads
# like the JSON the user wrote. Config modules register their tags here.
UNION_TAGS: set[str] = set()
UNION_FIELDS: set[str] = set()  # single-valued fields whose type is such a union


def field_path(loc: tuple) -> str:
    """Render a pydantic error location as ``buyer_features[2].column``."""
    path = ""
    previous = None
    for part in loc:
        is_tag = part in UNION_TAGS and (isinstance(previous, int) or previous in UNION_FIELDS)
        previous = part
        if is_tag:
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


_FIELD_PREFIX = re.compile(r"^(?P<field>[A-Za-z_][\w.\[\]]*): (?P<message>.+)$", re.S)


def problem_from_error_item(loc: tuple, message: str, prefix: str = "") -> Problem:
    """One pydantic error (its ``loc`` and ``msg``) as a Problem naming the field."""
    path = field_path(loc)
    if prefix:
        path = f"{prefix}.{path}" if path else prefix
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    # Cross-field checks run on the enclosing model and say which of its
    # fields is at fault as "field: message"; move that into the path.
    match = _FIELD_PREFIX.match(message)
    if match:
        path = f"{path}.{match['field']}" if path else match["field"]
        message = match["message"]
    return Problem(path, message)


def error_location(item: dict) -> tuple:
    """A pydantic error's location; a bad union tag is blamed on the tag field itself."""
    loc = tuple(item["loc"])
    if item.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        loc += (str(item.get("ctx", {}).get("discriminator", "")).strip("'"),)
    return loc


def problems_from_validation_error(error: ValidationError, prefix: str = "") -> list[Problem]:
    return [problem_from_error_item(error_location(item), item["msg"], prefix) for item in error.errors()]


def validate_model(model_cls, data, prefix: str = ""):
    """``model_cls.model_validate(data)``, raising ConfigError with field names."""
    try:
        return model_cls.model_validate(data)
    except ValidationError as error:
        raise ConfigError(problems_from_validation_error(error, prefix)) from None
