"""Query-string helpers shared by the list endpoints."""

from __future__ import annotations

from ml_pipeline.errors import ConfigError, Problem


def comma_choices(field: str, value: str | None, allowed: tuple[str, ...]) -> list[str] | None:
    """A comma-separated filter ("running,pending"), every value checked (422 naming the query field)."""
    if not value:
        return None
    wanted = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in wanted if v not in allowed]
    if unknown:
        raise ConfigError(Problem(field, f"unknown {field} {', '.join(map(repr, unknown))}; "
                                         f"one of {', '.join(allowed)}"))
    return wanted
