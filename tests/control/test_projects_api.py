"""Projects: membership decides visibility; owners manage the project."""

from tests.conftest import api_client_for
from tests.control.test_datasets_api import errors_by_field


def test_a_user_lists_only_projects_they_belong_to(project, oscars_project, api, oscar):
    assert [p["name"] for p in api.get("/api/projects/").json()] == ["b2b-recs"]
    assert [p["name"] for p in api_client_for(oscar).get("/api/projects/").json()] == ["oscars-recs"]


def test_creating_a_project_makes_the_creator_its_owner(api, olivia):
    response = api.post("/api/projects/", {"name": "fresh-recs", "description": "new"})
    assert response.status_code == 201
    assert response.json()["role"] == "owner"
    assert response.json()["datasets"] == 0


def test_project_names_are_validated_and_unique(api, project):
    assert errors_by_field(api.post("/api/projects/", {"name": "Bad Name"})) == {
        "name": "String should match pattern '^[a-z0-9][a-z0-9-]*$'"}
    taken = api.post("/api/projects/", {"name": "b2b-recs"})
    assert taken.status_code == 409
    assert errors_by_field(taken) == {"name": "a project named 'b2b-recs' already exists"}


def test_members_see_but_only_owners_change_the_project(project, mark, api):
    member = api_client_for(mark)
    assert member.get(f"/api/projects/{project.id}/").json()["role"] == "member"
    refused = member.patch(f"/api/projects/{project.id}/", {"description": "mine now"})
    assert refused.status_code == 403
    assert refused.json() == {"error": "Only the project's owners may do this"}
    assert member.delete(f"/api/projects/{project.id}/").status_code == 403
    assert api.patch(f"/api/projects/{project.id}/", {"description": "updated"}).json()["description"] == "updated"


def test_an_owner_adds_a_member_who_then_sees_the_project(project, api, oscar):
    assert api_client_for(oscar).get(f"/api/projects/{project.id}/").status_code == 404
    added = api.post(f"/api/projects/{project.id}/members/", {"username": "oscar"})
    assert added.status_code == 201
    assert api_client_for(oscar).get(f"/api/projects/{project.id}/").status_code == 200
    assert errors_by_field(api.post(f"/api/projects/{project.id}/members/", {"username": "nobody"})) == {
        "username": "no user named 'nobody'"}


def test_an_owner_can_delete_a_project_with_everything_in_it(api, project, dataset):
    from ml_platform.modeling.models import FeatureConfig
    from tests.control.test_modeling_api import FEATURES

    assert api.post(f"/api/projects/{project.id}/feature-configs/",
                    {"name": "fc", "dataset_id": dataset["id"], "config": FEATURES}).status_code == 201
    assert api.delete(f"/api/projects/{project.id}/").status_code == 204
    assert not FeatureConfig.objects.exists()
