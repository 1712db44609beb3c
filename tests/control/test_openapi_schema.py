"""The API's schema: readable with a token (scripts, code generators), and specific enough to build forms and
clients from: the configs with their fields, defaults and allowed values, and every refusal in the one shape."""

import pytest
from django.test import Client

from ml_platform.accounts.models import ApiToken
from ml_platform.api import api as ninja_api


@pytest.fixture
def schema_with_token(olivia):
    _, raw = ApiToken.objects.issue(olivia, "code generator")
    return Client().get("/api/openapi.json", HTTP_AUTHORIZATION=f"Bearer {raw}")


def test_the_schema_answers_a_token(schema_with_token):
    assert schema_with_token.status_code == 200
    assert "/api/projects/{project_id}/training-runs/" in schema_with_token.json()["paths"]


def test_the_schema_refuses_a_token_that_is_not_valid_in_the_error_shape(db):
    response = Client().get("/api/openapi.json", HTTP_AUTHORIZATION="Bearer mlp_revoked-or-never-issued")
    assert response.status_code == 401
    assert "Authentication required" in response.json()["error"]


def test_the_training_params_are_described_with_their_defaults(schema_with_token):
    schemas = schema_with_token.json()["components"]["schemas"]
    epochs = schemas["TrainingParams"]["properties"]["epochs"]
    assert (epochs["type"], epochs["default"], epochs["minimum"]) == ("integer", 10, 1)


def test_the_optimizer_is_described_with_its_allowed_values(schema_with_token):
    optimizer = schema_with_token.json()["components"]["schemas"]["ModelConfig"]["properties"]["optimizer"]
    assert optimizer["enum"] == ["adagrad", "adam", "sgd"] and optimizer["default"] == "adam"


def schema_name(prop: dict) -> str:
    """The component a property refers to (pydantic wraps a reference with a default in ``allOf``)."""
    return (prop.get("$ref") or prop["allOf"][0]["$ref"]).split("/")[-1]


def test_a_run_body_takes_the_real_config_schemas():
    schema = ninja_api.get_openapi_schema()
    body = schema["paths"]["/api/projects/{project_id}/training-runs/"]["post"]["requestBody"]
    run_in = schema["components"]["schemas"][schema_name(body["content"]["application/json"]["schema"])]
    sections = {
        name: schema_name(run_in["properties"][name])
        for name in ("split_config", "training_params", "gpu_config", "evaluator_config", "schedule_config")
    }
    assert sections == {
        "split_config": "SplitConfig",
        "training_params": "TrainingParams",
        "gpu_config": "GpuConfig",
        "evaluator_config": "EvaluatorConfig",
        "schedule_config": "ScheduleConfig",
    }


OPERATIONS = {
    f"{method.upper()} {path}": operation
    for path, methods in ninja_api.get_openapi_schema()["paths"].items()
    for method, operation in methods.items()
}


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_every_operation_declares_its_refusals_in_the_error_shape(name):
    refusals = {str(status): answer for status, answer in OPERATIONS[name]["responses"].items() if int(status) >= 400}
    assert "401" in refusals, f"{name} does not declare 401"
    for status, answer in refusals.items():
        assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}, (
            f"{name} answers {status} in another shape"
        )
