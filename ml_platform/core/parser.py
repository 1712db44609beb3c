"""How the API reads JSON request bodies: an object, or a 400 that says what is wrong with it."""

from __future__ import annotations

import json

from ninja.parser import Parser

from ml_platform.core.errors import ApiError


class JsonObjectParser(Parser):
    """Every JSON body of the API is an object.

    ninja's schemas read any other value (a list, a string, ``null``) as an object with no fields, so a
    PATCH of ``[]`` would answer 200 having changed nothing. django-ninja turns any error raised here into
    a bare "Cannot parse request body"; ml_platform.api answers this ApiError's message instead.
    """

    def parse_body(self, request):
        try:
            data = json.loads(request.body)
        except ValueError as error:  # not JSON, or not UTF-8
            detail = (
                f"{error.msg} at line {error.lineno} column {error.colno}"
                if isinstance(error, json.JSONDecodeError)
                else "it is not UTF-8 text"
            )
            raise ApiError(400, f"The request body is not valid JSON: {detail}") from None
        if not isinstance(data, dict):
            raise ApiError(400, f"The request body must be a JSON object, not {_json_type(data)}")
        return data


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "an array"}.get(type(value), type(value).__name__)
