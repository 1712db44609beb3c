"""Projects: membership decides visibility; owners manage the project, and a project always keeps one."""

import threading

import pytest
from django.db import connection

from ml_platform.core.errors import Conflict
from ml_platform.deployment.services import serving_name
from ml_platform.projects import services as project_services
from ml_platform.projects.models import Membership, Project
from ml_platform.registry.models import RegisteredModel
from ml_platform.registry.services import mlflow_model_name
from ml_platform.training.models import TrainingRun
from tests.helpers import FEATURES, api_client_for, errors_by_field, feature_config_via_api, model_config


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
        "name": "String should match pattern '^[a-z0-9][a-z0-9-]*$'"
    }
    taken = api.post("/api/projects/", {"name": "b2b-recs"})
    assert taken.status_code == 409
    assert errors_by_field(taken) == {"name": "you already have a project named 'b2b-recs'"}


def test_project_name_does_not_reveal_other_owners_projects(project, oscar):
    """Names are unique per owner: taking a name another user has tells nothing about their project."""
    oscars = api_client_for(oscar).post("/api/projects/", {"name": "b2b-recs"})
    assert oscars.status_code == 201, oscars.content
    assert oscars.json()["id"] != project.id
    assert [p["id"] for p in api_client_for(oscar).get("/api/projects/").json()] == [oscars.json()["id"]]
    assert Project.objects.get(pk=project.id).memberships.filter(user=oscar).exists() is False


def test_same_named_projects_share_no_pipeline_folder_experiment_or_model_name(
    api, project, oscar, run_body, purchases_csv, purchases_mapping
):
    oscars = project_services.create_project(oscar, project.name)
    theirs = api_client_for(oscar)
    dataset = theirs.post(
        f"/api/projects/{oscars.id}/datasets/",
        {"name": "purchases", "source": {"kind": "file", "path": str(purchases_csv)}, "mapping": purchases_mapping},
    ).json()
    features = feature_config_via_api(theirs, oscars, "standard", FEATURES, dataset)
    model = model_config(theirs, oscars, "two-tower", {"model_type": "retrieval", "retrieval_k": [5, 10]}, features)
    ours = api.post(f"/api/projects/{project.id}/training-runs/", run_body)
    other = theirs.post(
        f"/api/projects/{oscars.id}/training-runs/",
        {**run_body, "dataset_id": dataset["id"], "feature_config_id": features["id"], "model_config_id": model["id"]},
    )
    assert ours.status_code == other.status_code == 201, (ours.content, other.content)

    ours, other = (TrainingRun.objects.get(pk=r.json()["id"]) for r in (ours, other))
    assert (ours.run_number, other.run_number) == (1, 1)
    assert ours.spec["name"] == f"p{project.id}-b2b-recs" != other.spec["name"] == f"p{oscars.id}-b2b-recs"
    assert ours.spec["push"]["destination"] != other.spec["push"]["destination"]
    assert project.unique_name != oscars.unique_name  # MLflow's experiment name
    registered = [RegisteredModel.objects.get(project=p, name="recs") for p in (project, oscars)]
    assert len({mlflow_model_name(r) for r in registered}) == len({serving_name(r) for r in registered}) == 2


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
        "username": "no user named 'nobody'"
    }


def test_an_owner_can_delete_a_project_with_everything_in_it(api, project, dataset):
    from ml_platform.modeling.models import FeatureConfig

    assert (
        api.post(
            f"/api/projects/{project.id}/feature-configs/",
            {"name": "fc", "dataset_id": dataset["id"], "config": FEATURES},
        ).status_code
        == 201
    )
    assert api.delete(f"/api/projects/{project.id}/").status_code == 204
    assert not FeatureConfig.objects.exists()


def test_last_owner_cannot_demote_themselves(project, api, olivia):
    refused = api.post(f"/api/projects/{project.id}/members/", {"username": "olivia", "role": "member"})
    assert refused.status_code == 409
    assert errors_by_field(refused) == {
        "role": "'olivia' is the project's only owner; make another member an owner first"
    }
    assert Membership.objects.get(project=project, user=olivia).role == Membership.OWNER


def test_an_owner_can_step_down_once_another_member_is_an_owner(project, api, olivia, mark):
    assert api.post(f"/api/projects/{project.id}/members/", {"username": "mark", "role": "owner"}).status_code == 201
    stepped_down = api.post(f"/api/projects/{project.id}/members/", {"username": "olivia", "role": "member"})
    assert stepped_down.status_code == 201, stepped_down.content
    assert list(project.memberships.filter(role=Membership.OWNER).values_list("user__username", flat=True)) == ["mark"]
    refused = api_client_for(mark).post(f"/api/projects/{project.id}/members/", {"username": "mark", "role": "member"})
    assert refused.status_code == 409 and "role" in errors_by_field(refused)


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_themselves_at_once_leave_one_owner(project, olivia, mark):
    """Each demotion alone is allowed (the other remains owner); run together, one must wait and be refused."""
    Membership.objects.filter(project=project, user=mark).update(role=Membership.OWNER)
    start = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def step_down(username: str) -> None:
        try:
            start.wait()
            project_services.add_member(project, username, Membership.MEMBER)
            outcomes[username] = "member"
        except Conflict:
            outcomes[username] = "refused"
        finally:
            connection.close()

    threads = [threading.Thread(target=step_down, args=(name,)) for name in ("olivia", "mark")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes.values()) == ["member", "refused"]
    assert project.memberships.filter(role=Membership.OWNER).count() == 1
