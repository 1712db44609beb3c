"""Field types shared by the API's input schemas, so every endpoint refuses the same bad input the same way.

``Id`` bounds an object id to what a BIGINT column holds: a larger number can
match nothing, and SQLite refuses to even bind it (a 500), so it answers 422
naming the field. A PATCH field is ``omittable()``: left out it keeps the
stored value; ``NotNull`` refuses an explicit null for a column that cannot be
empty, ``BlankIfNull`` takes null as "clear this text".
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, Field

MAX_ID = 2**63 - 1  # BigAutoField: SQLite's INTEGER and PostgreSQL's bigint

Id = Annotated[int, Field(ge=1, le=MAX_ID)]

PAGE_MAX = 1_000_000  # far past any real listing, and keeps OFFSET inside a BIGINT at any page size


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may not be null; leave the field out to keep it as it is")
    return value


T = TypeVar("T")
NotNull = Annotated[T, BeforeValidator(_refuse_null)]
BlankIfNull = Annotated[str, BeforeValidator(lambda value: "" if value is None else value)]


def _no_default(schema: dict) -> None:
    schema.pop("default", None)  # the schema says what may be sent; an omitted field has no value to show


def omittable(**constraints: Any) -> Any:
    """A PATCH field: may be left out (``model_dump(exclude_unset=True)`` then leaves it out too)."""
    return Field(default=None, json_schema_extra=_no_default, **constraints)
