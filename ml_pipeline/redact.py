"""Masking secrets (database passwords) wherever a source is shown, logged or written down.

A PostgreSQL source's URL carries its password; the platform must keep it to
read the data, but answers, pages, logs, MLflow and artifacts on disk show
``postgresql://user:********@host/db`` instead.
"""

from __future__ import annotations

import re

MASK = "********"

_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*):([^\s/]*)@")
_DSN_PASSWORD = re.compile(r"(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)")


def redact_text(text: str) -> str:
    """``text`` with every URL password and ``password=`` value masked."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{MASK}@", text)
    return _DSN_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}", text)


def redact(value):
    """A copy of a JSON-like value with every string passed through :func:`redact_text`."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value
