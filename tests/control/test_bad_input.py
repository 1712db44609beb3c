"""Bad input the schemas must refuse with a 422 naming the field, where it used to reach the database (a 500):
explicit nulls in PATCH bodies for columns that cannot be empty, and ids larger than any BIGINT."""

import re

import pytest

from ml_platform.api import api as ninja_api
from ml_platform.datasets.models import Dataset
from ml_platform.modeling.models import FeatureConfig, ModelConfig
from tests.helpers import errors_by_field

pytestmark = pytest.mark.django_db

NOT_NULL = "may not be null; leave the field out to keep it as it is"
TOO_BIG = 2**63  # one past the largest BIGINT
HUGE_IDS = [str(TOO_BIG), str(-TOO_BIG - 1), "99999999999999999999"]


@pytest.fixture
def editable(dataset, feature_config, retrieval):
    """PATCH URL, model and id of each catalog object."""
    return {
        "dataset": (f"/api/datasets/{dataset['id']}/", Dataset, dataset["id"]),
        "feature config": (f"/api/feature-configs/{feature_config['id']}/", FeatureConfig, feature_config["id"]),
        "model config": (f"/api/model-configs/{retrieval['id']}/", ModelConfig, retrieval["id"]),
    }


@pytest.mark.parametrize("kind", ["dataset", "feature config", "model config"])
def test_patch_with_null_name_is_refused_naming_the_field(api, editable, kind):
    url, model, pk = editable[kind]
    before = model.objects.get(pk=pk).name
    response = api.patch(url, {"name": None})
    assert response.status_code == 422
    assert errors_by_field(response) == {"name": NOT_NULL}
    assert model.objects.get(pk=pk).name == before


@pytest.mark.parametrize(
    "kind, fields",
    [
        ("dataset", ["source", "mapping"]),
        ("feature config", ["dataset_id", "config"]),
        ("model config", ["config"]),
    ],
)
def test_patch_with_null_for_a_required_part_is_refused_naming_the_field(api, editable, kind, fields):
    url, _, _ = editable[kind]
    response = api.patch(url, dict.fromkeys(fields))
    assert response.status_code == 422
    assert errors_by_field(response) == dict.fromkeys(fields, NOT_NULL)


@pytest.mark.parametrize("kind", ["dataset", "feature config", "model config", "project"])
def test_patch_with_null_description_clears_it(api, editable, project, kind):
    url, model, pk = (
        editable[kind] if kind != "project" else (f"/api/projects/{project.id}/", type(project), project.id)
    )
    assert api.patch(url, {"description": "to be cleared"}).json()["description"] == "to be cleared"
    response = api.patch(url, {"description": None})
    assert response.status_code == 200, response.content
    assert response.json()["description"] == "" == model.objects.get(pk=pk).description


def test_patch_leaves_out_what_it_does_not_name(api, editable):
    url, model, pk = editable["model config"]
    before = model.objects.get(pk=pk)
    assert api.patch(url, {"description": "only this"}).status_code == 200
    after = model.objects.get(pk=pk)
    assert (after.name, after.config, after.feature_config_id) == (before.name, before.config, before.feature_config_id)


@pytest.mark.parametrize(
    "path",
    [
        "/api/projects/{project}/training-runs/?dataset_id={id}",
        "/api/projects/{project}/experiments/?dataset_id={id}",
        "/api/projects/{project}/experiments/best/?dataset_id={id}",
        "/api/projects/{project}/feature-configs/?dataset_id={id}",
        "/api/model-configs/{model_config}/?feature_config_id={id}",
    ],
)
@pytest.mark.parametrize("huge", HUGE_IDS[:2])
def test_huge_id_filter_answers_422(api, project, retrieval, path, huge):
    url = path.format(project=project.id, model_config=retrieval["id"], id=huge)
    response = api.get(url)
    assert response.status_code == 422, response.content
    assert list(errors_by_field(response)) == [re.search(r"\?(\w+)=", path)[1]]


@pytest.mark.parametrize("ids", [f"{TOO_BIG},1", "1,0"])
def test_huge_ids_to_compare_answer_422(api, ids):
    response = api.get(f"/api/training-runs/compare/?ids={ids}")
    assert response.status_code == 422
    assert list(errors_by_field(response)) == ["ids"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/projects/{project}/training-runs/",
        "/api/projects/{project}/experiments/",
        "/api/projects/{project}/registered-models/",
    ],
)
def test_a_page_past_any_listing_answers_422(api, project, path):
    response = api.get(path.format(project=project.id) + f"?page={10**18}")
    assert response.status_code == 422
    assert list(errors_by_field(response)) == ["page"]


@pytest.mark.parametrize("huge", HUGE_IDS)
def test_huge_ids_in_paths_answer_404_or_422(api, project, huge):
    """Every operation of the API with each id in its path replaced by one no BIGINT holds."""
    answered = {}
    for path, operations in ninja_api.get_openapi_schema()["paths"].items():
        if "{" not in path:
            continue
        url = re.sub(r"\{(\w+)\}", lambda m: "started" if m[1] == "event" else huge, path)
        for method in operations:
            send = getattr(api, method)
            response = send(url, {}) if method in ("post", "patch", "put") else send(url)
            answered[f"{method.upper()} {url}"] = response.status_code
    assert len(answered) > 40
    assert {call: status for call, status in answered.items() if status not in (401, 404, 422)} == {}
