"""Schemathesis over every operation of the OpenAPI schema, against a live server (see conftest.py).

Each operation is one test: schemathesis' coverage cases (boundaries, missing and wrong-typed fields, other
methods) and a fixed number of generated requests, valid and invalid, all with a valid token. Half of the
ids in paths, query strings and top-level body fields are the seeded objects' (the rest are whatever
schemathesis makes), so requests reach real datasets, configs and runs. A request fails the test when it
answers a 5xx, when it answers a status its operation does not declare (every operation declares its
refusals: 401, and 400/403/404/409/413/422/502 where they can happen, with the error body's schema), when
a documented answer does not match its response schema, or when a 4xx is not the API's one error shape
(``error_shape`` below, which also covers what gunicorn or Django answer before an operation runs). The
run is deterministic: a fixed seed, hypothesis derandomized, no example database, and the same server
state for the same schema.

Operations that start processes are kept: nothing generated can reach one. Deploying needs a pushed
model version and pushing needs a finished, blessed run, and no run can finish because the worker is
not running; the server's serving port is one nobody listens on.
"""

from __future__ import annotations

import json

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup

from ml_platform.api import api
from tests.fuzz.conftest import SEEDED_COLUMNS, SEEDED_IDS

SEED = 20_250_808
MAX_EXAMPLES = 80  # generated requests per operation in the fuzzing phase (plus examples and coverage cases)

# The seeded ids, bound to the parameters of the same name (path, query or top-level body field) half of the
# time; the seeded upload and its columns, bound to a dataset's source and mapping most of the time, so that
# datasets get made and previewed, not only refused.
_dictionaries = {
    **SEEDED_IDS,
    "config_id": SEEDED_IDS["feature_config_id"] + SEEDED_IDS["model_config_id"],
    "column": SEEDED_COLUMNS,
}
_bound = {name: {"dictionary": name, "probability": 0.5} for name in SEEDED_IDS}
_bound["config_id"] = {"dictionary": "config_id", "probability": 0.5}
_dataset_fields = {
    "body.source.upload_id": "upload_id",
    **{f"body.mapping.{role}": "column" for role in ("buyer_id", "product_id", "timestamp", "target")},
    **{
        f"body.{field}[*].column": "column"
        for field in ("mapping.buyer_features", "mapping.product_features", "filters.conditions")
    },
}
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        # Every request carries the seeded user's token (below), not a generated Authorization header or
        # session cookie: what a request without valid credentials gets is test_auth_required.py's subject.
        "generation": {"with-security-parameters": False},
        "dictionaries": {name: {"values": ids} for name, ids in _dictionaries.items()},
        "parameters": {
            **_bound,
            **{f"body.{name}": binding for name, binding in _bound.items()},
            **{key: {"dictionary": name, "probability": 0.8} for key, name in _dataset_fields.items()},
        },
    }
)
OPENAPI = json.loads(json.dumps(api.get_openapi_schema()))  # as served: status codes become strings
schema = schemathesis.openapi.from_dict(OPENAPI, config=CONFIG)


def error_shape(ctx, response, case):
    """Every 4xx answers ``{"error": "...", "errors": [{"field": ..., "message": ...}]}``.

    Except what gunicorn refuses before Django sees the request (a request line over 4,094 bytes): its HTML
    400 carries none of the headers Django's SecurityMiddleware puts on every answer of the platform.
    """
    if not 400 <= response.status_code < 500 or "x-content-type-options" not in response.headers:
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"a {response.status_code} answer is not JSON: {response.text[:200]!r}") from None
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], (
        f"a {response.status_code} answer has no 'error' message: {body!r}"
    )
    for problem in body.get("errors", []):
        assert (
            isinstance(problem, dict)
            and set(problem) == {"field", "message"}
            and isinstance(problem["field"], str)
            and isinstance(problem["message"], str)
        ), f"a {response.status_code} answer has a malformed problem: {problem!r}"
    return True


@pytest.fixture(scope="module")
def session(fuzz_server, served_openapi) -> requests.Session:
    assert served_openapi == OPENAPI, "the server's /api/openapi.json is not the schema fuzzed"
    return requests.Session()


@pytest.mark.slow
@schema.parametrize()
# pytest 9.2 builds a test's node id from its function name and its parameters only, so schemathesis 4.32's
# items (one per operation) would all get the same id, and pytest-xdist would run one of them. A parameter
# makes each id unique: test_operation_answers_within_its_schema[GET /api/tokens/][seed=20250808].
@pytest.mark.parametrize("seed", [SEED], ids=lambda value: f"seed={value}")
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_operation_answers_within_its_schema(case, seed, fuzz_server, session):
    try:
        case.call_and_validate(
            base_url=fuzz_server.url,
            session=session,
            timeout=30,
            headers={"Authorization": f"Bearer {fuzz_server.token}"},
            checks=[not_a_server_error, status_code_conformance, response_schema_conformance, error_shape],
        )
    except FailureGroup as failures:
        failures.add_note(
            f"The server's log, last lines (a 500's traceback is there):\n{fuzz_server.log_tail()}\n"
            f"Every request it answered: {fuzz_server.access_log}"
        )
        raise
