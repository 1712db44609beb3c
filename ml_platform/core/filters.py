"""Query-string helpers shared by the list endpoints (each bad value answers 422 naming the query field)."""

from __future__ import annotations

from ml_pipeline.errors import ConfigError, Problem
from ml_platform.core.fields import MAX_ID


def comma_choices(field: str, value: str | None, allowed: tuple[str, ...]) -> list[str] | None:
    """A comma-separated filter ("running,pending"), every value checked (422 naming the query field)."""
    if not value:
        return None
    wanted = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in wanted if v not in allowed]
    if unknown:
        raise ConfigError(
            Problem(field, f"unknown {field} {', '.join(map(repr, unknown))}; one of {', '.join(allowed)}")
        )
    return wanted


def comma_ids(field: str, value: str, what: str = "ids") -> list[int]:
    """Comma-separated ids ("12,14"), in order, repeats dropped; each one an id a BIGINT column can hold."""
    try:
        ids = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:  # also a number of thousands of digits
        raise ConfigError(Problem(field, f"comma-separated {what}, e.g. 12,14")) from None
    if any(not 1 <= i <= MAX_ID for i in ids):
        raise ConfigError(Problem(field, f"{what} are whole numbers from 1 to {MAX_ID}"))
    return list(dict.fromkeys(ids))
