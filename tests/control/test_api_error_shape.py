"""Answers the API's handlers never see (ninja's 405, Django's 404 and 500, bodies ninja cannot read) still
have the one error shape."""

import json

import pytest
from django.http import HttpResponseServerError
from django.test import RequestFactory

from ml_platform.core.middleware import ApiErrorShapeMiddleware


def test_method_a_path_does_not_have_answers_405_in_the_error_shape(api, project):
    response = api.client.put(f"/api/projects/{project.id}/", **api.headers)

    assert response.status_code == 405
    assert response.json() == {"error": "Method PUT is not allowed here (allowed: " + response["Allow"] + ")"}
    assert set(response["Allow"].split(", ")) == {"GET", "PATCH", "DELETE"}


def test_path_no_endpoint_has_answers_404_in_the_error_shape(api):
    response = api.get("/api/no-such-endpoint/")

    assert response.status_code == 404
    assert response.json() == {"error": "No API endpoint at /api/no-such-endpoint/"}


def test_server_error_page_is_answered_as_json_without_its_text():
    def crashing_view(request):
        return HttpResponseServerError("<h1>Server Error</h1> /srv/platform/db.sqlite3: SELECT * FROM auth_user")

    response = ApiErrorShapeMiddleware(crashing_view)(RequestFactory().get("/api/projects/"))

    assert response.status_code == 500
    assert json.loads(response.content) == {"error": "Internal Server Error"}


def test_pages_outside_the_api_keep_their_own_error_pages():
    response = ApiErrorShapeMiddleware(lambda request: HttpResponseServerError("<h1>Server Error</h1>"))(
        RequestFactory().get("/projects/1/")
    )

    assert response.content == b"<h1>Server Error</h1>"


@pytest.mark.parametrize(
    "body, kind", [("[]", "an array"), ("null", "null"), ('"renamed"', "a string"), ("5", "a number")]
)
def test_body_that_is_not_a_json_object_is_refused_not_read_as_no_change(api, project, body, kind):
    response = api.client.patch(
        f"/api/projects/{project.id}/", data=body, content_type="application/json", **api.headers
    )

    assert response.status_code == 400
    assert response.json() == {"error": f"The request body must be a JSON object, not {kind}"}


def test_body_that_is_not_json_answers_400_saying_where(api, project):
    response = api.client.post(
        f"/api/projects/{project.id}/datasets/", data='{"name": "x",', content_type="application/json", **api.headers
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": "The request body is not valid JSON: Expecting property name enclosed "
        "in double quotes at line 1 column 14"
    }
