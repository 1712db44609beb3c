"""The API's single error shape: ``{"error": "...", "errors": [{"field", "message"}]}``."""

from __future__ import annotations

from ml_pipeline.errors import Problem, error_location, problem_from_error_item


class ApiError(Exception):
    """An error to answer with a status code and a readable message."""

    def __init__(self, status: int, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []


def error_body(message: str, problems: list[Problem] | None = None) -> dict:
    body = {"error": message}
    if problems:
        body["errors"] = [{"field": p.field, "message": p.message} for p in problems]
    return body


def problems_from_ninja(errors: list[dict]) -> list[Problem]:
    """Ninja reports ``loc`` as ("body", "<param name>", "field", ...); keep the field part."""
    problems = []
    for item in errors:
        loc = list(error_location(item))
        if loc and loc[0] in ("body", "query", "path", "form", "file"):
            source = loc.pop(0)
            if source == "body" and len(loc) > 1:
                loc.pop(0)  # the view's parameter name, e.g. "payload"
        problems.append(problem_from_error_item(tuple(loc), item.get("msg", "invalid")))
    return problems
