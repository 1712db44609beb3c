"""Deploying registered versions to the local serving endpoint: a real server process, real HTTP requests.

The story runs once for the module (``story``): two small runs are trained
and registered (versions 1 and 2); the API deploys version 1, replaces it
with version 2, rolls back to 1, fails to deploy a version the server cannot
load, and undeploys, and after each step the serving process itself is asked
what it serves. Each test then checks one thing the story showed. The server
is stopped at the module's end and must be gone.
"""

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
from django.conf import settings as django_settings
from django.utils.dateparse import parse_datetime

from ml_platform.deployment import serving_process
from ml_platform.deployment.models import Deployment, DeploymentEvent
from ml_platform.projects.models import Membership
from ml_platform.registry.models import RegisteredModel
from ml_platform.registry.services import push_to_registry
from ml_platform.training.models import TrainingRun
from ml_platform.training.worker import Worker
from tests.helpers import (
    api_client_for,
    carry_out_deployments,
    demo_catalog,
    drive,
    pid_alive,
    queue_run,
    served_project,
)

# Not transactional: the story's rows are committed by its module fixture, and a transactional test's flush
# would remove them.
pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def get(url):
    return serving_process.http_json("GET", url, timeout=30)


def post(url, body):
    return serving_process.http_json("POST", url, body, timeout=30)


def anonymous(method, url) -> int:
    """The status of a request without the platform's token."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_platform_restarts_a_server_that_runs_with_another_token_or_other_limits(serving, settings):
    first = serving_process.ensure_server()
    health = serving_process.healthz(first.host, first.port)
    assert health["pid"] == first.pid
    assert health["options"] == {"auth": True, "max_body_bytes": 4 * 1024 * 1024, "max_instances": 1000}
    assert serving_process.ensure_server().pid == first.pid  # as configured: kept

    settings.SERVING_TOKEN = "another-token"
    second = serving_process.ensure_server()
    assert second.pid != first.pid and not pid_alive(first.pid)
    assert serving_process.server_status()["answering"]
    assert anonymous("GET", f"{serving}/v1/models/anything") == 401

    settings.SERVING_MAX_INSTANCES = 10
    third = serving_process.ensure_server()
    assert third.pid != second.pid and serving_process.healthz(third.host, third.port)["options"]["max_instances"] == 10


# --------------------------------------------------------------------------- the story, once


def trained_and_registered(project, owner, folder: Path) -> tuple[TrainingRun, TrainingRun]:
    """Two runs of the same catalog, executed by the worker and pushed: versions 1 and 2."""
    catalog = demo_catalog(project, owner, folder)
    worker = Worker()
    try:
        first = drive(worker, queue_run(project, owner, catalog), lambda r: r.is_terminal)
        assert first.status == TrainingRun.COMPLETED, first.error_message
        second = drive(worker, queue_run(project, owner, catalog), lambda r: r.is_terminal)
        assert second.status == TrainingRun.COMPLETED, second.error_message
    finally:
        worker.shutdown()
    return push_to_registry(first), push_to_registry(second)


def a_version_that_cannot_load(first: TrainingRun, folder: Path) -> TrainingRun:
    """Version 3: a copy of version 1 whose pushed SavedModel is garbage."""
    broken = folder / "broken-push"
    shutil.copytree(first.serving_model_path, broken / "output" / "serving_model")
    (broken / "output" / "serving_model" / "saved_model.pb").write_bytes(b"not a SavedModel")
    third = TrainingRun.objects.get(pk=first.pk)
    third.pk, third.run_number, third.registry_version = None, 99, 3
    third.artifacts = {**first.artifacts, "Pusher": {**first.artifacts["Pusher"], "uri": str(broken)}}
    third.save()
    return third


@pytest.fixture(scope="module")
def story(django_db_setup, django_db_blocker):
    """What each step of the story answered, and what the serving process said after it."""
    with served_project(django_db_blocker, "deploy") as (made, serving):
        mark, oscar = made.user("mark"), made.user("oscar")
        Membership.objects.create(project=made.project, user=mark, role=Membership.MEMBER)
        first, second = trained_and_registered(
            made.project, made.owner, Path(django_settings.DATASET_ALLOWED_ROOTS[0]) / "deploy-story" / made.unique
        )
        registered = first.registered_model
        api, url = api_client_for(made.owner), f"/api/registered-models/{registered.pk}"
        s = SimpleNamespace(
            serving=serving,
            project=made.project,
            owner=made.owner,
            first=first,
            second=second,
            registered=registered,
            url=url,
        )
        s.listed_before_deploys = api.get(f"/api/projects/{made.project.pk}/registered-models/").json()["results"]
        s.detail_before_deploys = api.get(f"{url}/").json()
        s.vertex = api.post(f"{url}/deploy/", {"version": 1, "target": "vertex_ai"})

        # -- deploy version 1: the request answers at once; the worker starts the server and waits for the model
        s.requested = api.post(f"{url}/deploy/", {"version": 1})
        s.config_when_requested = serving_process.read_models_config()["models"]
        s.seen_while_loading = api.get(f"{url}/deployment/").json()
        s.deploying_again_while_loading = api.post(f"{url}/deploy/", {"version": 2})
        s.carried_out = carry_out_deployments()
        s.deployed = api.get(f"{url}/deployment/")
        state = s.deployed.json()
        s.name, endpoint = state["serving_name"], state["endpoint_url"]
        s.endpoint_after_deploy = get(endpoint)
        s.health_after_deploy = get(f"{serving}/healthz")[1]
        s.anonymous_status = anonymous("GET", endpoint)

        examples = Path(first.artifacts["ExampleGen"]["uri"]) / "output"
        s.catalog_ids = set(pq.read_table(examples / "catalog.parquet", columns=["product_id"]).column(0).to_pylist())
        row = pq.read_table(examples / "train").to_pylist()[0]
        s.buyer = buyer = row["buyer_id"]
        s.recommended = get(f"{serving}/recommend?buyer_id={quote(buyer)}&k=5")
        # TF Serving's row and columnar formats, by the input names of the signature
        s.features = features = {
            "buyer_id": buyer,
            "buyer_segment": row["buyer_segment"],
            "buyer_city": row["buyer_city"],
            "timestamp": int(row["timestamp"].timestamp()),
        }
        s.predicted_rows = post(state["predict_url"], {"signature_name": "serving_default", "instances": [features]})
        s.predicted_columns = post(
            state["predict_url"],
            {"inputs": {k: [v, v] for k, v in features.items()}, "signature_name": "query_embedding"},
        )
        s.predicted_without_an_input = post(
            state["predict_url"], {"instances": [{k: v for k, v in features.items() if k != "buyer_city"}]}
        )
        s.unknown_buyer = get(f"{serving}/recommend?buyer_id=nobody-at-all&k=5")

        # -- deploy version 2: it replaces version 1 (one deployed version per registered model)
        s.replaced_request = api.post(f"{url}/deploy/", {"version": 2})
        carry_out_deployments()
        s.replaced = api.get(f"{url}/deployment/")
        s.endpoint_after_replace = get(endpoint)
        s.recommended_after_replace = get(f"{serving}/recommend?buyer_id={quote(buyer)}&k=3")
        s.models_after_replace = list(serving_process.read_models_config()["models"])
        s.deployed_version_after_replace = RegisteredModel.objects.get(pk=registered.pk).deployed_version
        s.replaced_again = api.post(f"{url}/deploy/", {"version": 2})

        # -- rollback: back to version 1, which the server answers with
        s.rollback_request = api.post(f"{url}/rollback/")
        carry_out_deployments()
        s.rolled_back = api.get(f"{url}/deployment/")
        s.recommended_after_rollback = get(f"{serving}/recommend?buyer_id={quote(buyer)}&k=5")
        s.rolled_back_again = api.post(f"{url}/rollback/")

        # -- a version the server cannot load
        a_version_that_cannot_load(first, Path(django_settings.DATA_DIR) / "deploy-story" / made.unique)
        s.broken = api.post(f"{url}/deploy/", {"version": 3})
        carry_out_deployments()
        s.state_after_broken = api.get(f"{url}/deployment/").json()
        s.recommended_after_broken = get(f"{serving}/recommend?buyer_id={quote(buyer)}&k=5")

        # -- what a member and the registry's views see while version 1 is deployed
        s.seen_by_member = api_client_for(mark).get(f"{url}/deployment/").json()
        s.listed = api.get(f"/api/projects/{made.project.pk}/registered-models/").json()
        s.detail = api.get(f"{url}/").json()
        s.outsider = api_client_for(oscar)

        # -- undeploy: the endpoint no longer knows the model
        s.undeploy_request = api.post(f"{url}/undeploy/")
        carry_out_deployments()
        s.undeployed = api.get(f"{url}/deployment/")
        s.endpoint_after_undeploy = get(endpoint)
        s.recommended_after_undeploy = get(f"{serving}/recommend?model={s.name}&buyer_id={quote(buyer)}")
        s.undeployed_again, s.rolled_back_when_undeployed = api.post(f"{url}/undeploy/"), api.post(f"{url}/rollback/")
        s.missing_version = api.post(f"{url}/deploy/", {"version": 99})
        yield s


def test_both_runs_became_versions_of_one_registered_model(story):
    assert (story.first.registry_version, story.second.registry_version) == (1, 2)
    assert story.second.registered_model_id == story.registered.pk


def test_a_model_was_last_trained_when_its_newest_versions_run_finished(story):
    newest = story.second.completed_at
    newest = newest.replace(microsecond=newest.microsecond // 1000 * 1000)  # the API answers milliseconds
    [listed] = story.listed_before_deploys
    detail = story.detail_before_deploys
    assert parse_datetime(listed["last_trained_at"]) == parse_datetime(detail["last_trained_at"]) == newest


def test_vertex_ai_is_refused_on_the_target_field_until_it_is_available(story):
    assert story.vertex.status_code == 422
    error = story.vertex.json()["errors"][0]
    assert error["field"] == "target" and "Vertex AI" in error["message"]


def test_a_deploy_request_answers_before_the_model_is_loaded(story):
    assert story.requested.status_code == 200, story.requested.content
    answer = story.requested.json()
    assert (answer["state"], answer["pending"]["action"], answer["pending"]["version"]) == ("loading", "deploy", 1)
    assert answer["version"] is None and answer["live"] is None
    assert story.config_when_requested == {}  # nothing was asked of the serving process yet
    assert story.seen_while_loading["state"] == "loading"


def test_another_request_while_one_is_loading_is_a_conflict(story):
    refused = story.deploying_again_while_loading
    assert refused.status_code == 409 and "in progress" in refused.json()["error"]


def test_deploying_version_1_serves_it_once_the_worker_loaded_it(story):
    assert story.carried_out == 1
    assert (story.deployed.json()["state"], story.deployed.json()["pending"]) == ("serving", None)
    assert story.deployed.status_code == 200, story.deployed.content
    state = story.deployed.json()
    assert story.name == f"p{story.project.id}-{story.project.name}.recs"
    assert (state["status"], state["version"], state["target"]) == ("deployed", 1, "local")
    assert state["endpoint_url"] == f"{story.serving}/v1/models/{story.name}"
    assert state["live"]["state"] == "available" and state["rollback_version"] is None
    assert story.endpoint_after_deploy == (
        200,
        {
            "model_version_status": [
                {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ]
        },
    )
    assert story.health_after_deploy["models"][story.name]["version"] == 1


def test_the_endpoint_refuses_requests_without_the_token_the_platform_sends(story):
    assert story.anonymous_status == 401


def test_recommendations_are_distinct_catalog_products_best_first(story):
    code, answer = story.recommended
    assert code == 200, answer
    assert (answer["buyer_id"], answer["model"], answer["version"]) == (story.buyer, story.name, 1)
    ids = [r["product_id"] for r in answer["recommendations"]]
    scores = [r["score"] for r in answer["recommendations"]]
    assert len(ids) == 5 and len(set(ids)) == 5 and set(ids) <= story.catalog_ids
    assert scores == sorted(scores, reverse=True)


def test_predict_answers_tf_servings_row_format(story):
    code, answer = story.predicted_rows
    assert code == 200, answer
    [prediction] = answer["predictions"]
    assert set(prediction) == {"product_ids", "scores"}
    assert set(prediction["product_ids"]) <= story.catalog_ids
    assert prediction["scores"] == sorted(prediction["scores"], reverse=True)


def test_predict_answers_tf_servings_columnar_format(story):
    code, answer = story.predicted_columns
    assert code == 200 and len(answer["outputs"]) == 2  # one output: the bare value, as TF Serving answers


def test_predict_names_a_missing_input_and_recommend_an_unknown_buyer(story):
    code, answer = story.predicted_without_an_input
    assert code == 400 and "missing input 'buyer_city'" in answer["error"]
    code, answer = story.unknown_buyer
    assert code == 404 and "unknown buyer 'nobody-at-all'" in answer["error"]


def test_deploying_version_2_replaces_version_1(story):
    assert story.replaced.status_code == 200, story.replaced.content
    assert (story.replaced.json()["version"], story.replaced.json()["rollback_version"]) == (2, 1)
    assert story.endpoint_after_replace[1]["model_version_status"][0]["version"] == "2"
    assert story.recommended_after_replace[1]["version"] == 2
    assert story.models_after_replace == [story.name]
    assert story.deployed_version_after_replace == 2


def test_deploying_the_deployed_version_again_is_a_conflict(story):
    assert story.replaced_again.status_code == 409 and "already deployed" in story.replaced_again.json()["error"]


def test_rollback_returns_to_version_1_and_is_in_the_history(story):
    assert story.rolled_back.status_code == 200, story.rolled_back.content
    state = story.rolled_back.json()
    assert (state["status"], state["version"], state["rollback_version"]) == ("deployed", 1, None)
    assert story.recommended_after_rollback[1]["version"] == 1
    assert [(e["action"], e["version"], e["previous_version"]) for e in state["history"]] == [
        ("rollback", 1, 2),
        ("deploy", 2, 1),
        ("deploy", 1, None),
    ]
    assert state["history"][0]["user"] == story.owner.username


def test_there_is_no_rollback_past_the_first_version(story):
    refused = story.rolled_back_again
    assert refused.status_code == 409 and "No earlier version" in refused.json()["error"]


def test_a_version_the_server_cannot_load_fails_with_the_reason_and_version_1_keeps_serving(story):
    assert story.broken.status_code == 200 and story.broken.json()["state"] == "loading"
    state = story.state_after_broken
    assert (state["state"], state["status"], state["version"]) == ("failed", "deployed", 1)
    assert "could not load version 3" in state["message"]
    assert (state["live"]["state"], state["live"]["version"]) == ("available", 1)
    assert "version 1 is still deployed" in state["message"]
    assert (state["history"][0]["action"], state["history"][0]["succeeded"]) == ("deploy", False)
    assert story.recommended_after_broken[1]["version"] == 1


def test_members_see_the_deployment(story):
    assert story.seen_by_member["version"] == 1


def test_outsiders_cannot_tell_the_model_exists(story):
    url, outsider = story.url, story.outsider
    for response in (
        outsider.get(f"{url}/deployment/"),
        outsider.post(f"{url}/deploy/", {"version": 1}),
        outsider.post(f"{url}/undeploy/"),
        outsider.post(f"{url}/rollback/"),
        outsider.get(f"{url}/"),
    ):
        assert response.status_code == 404


def test_the_registry_shows_the_deployed_version(story):
    assert story.listed["kpi"] == {"total": 1, "registered": 1, "with_schedule": 0, "deployed": 1}
    assert story.listed["results"][0]["status"] == "deployed"
    assert [(v["version"], v["is_deployed"], v["deployable"]) for v in story.detail["versions"]] == [
        (3, False, True),
        (2, False, True),
        (1, True, True),
    ]


def test_undeploy_removes_the_model_from_the_endpoint(story):
    assert story.undeployed.status_code == 200, story.undeployed.content
    assert (story.undeployed.json()["status"], story.undeployed.json()["version"]) == ("none", None)
    code, answer = story.endpoint_after_undeploy
    assert code == 404 and f"no model '{story.name}'" in answer["error"]
    assert story.recommended_after_undeploy[0] == 404
    assert RegisteredModel.objects.get(pk=story.registered.pk).deployed_version is None
    assert Deployment.objects.get(registered_model=story.registered).status == Deployment.NONE


def test_nothing_to_undeploy_or_roll_back_once_undeployed(story):
    assert story.undeployed_again.status_code == 409
    assert story.rolled_back_when_undeployed.status_code == 409


def test_a_version_that_does_not_exist_is_404(story):
    assert story.missing_version.status_code == 404
    assert story.missing_version.json()["error"] == "recs has no version 99"


def test_every_deploy_rollback_and_undeploy_is_an_event(story):
    assert DeploymentEvent.objects.filter(registered_model=story.registered).count() == 5


# --------------------------------------------------------------------------- the registry and the server alone


def test_registered_models_list_filters_and_access(project, olivia, oscar, oscars_project):
    def make(name, model_type, registered=True, deployed=None):
        from django.utils import timezone

        return RegisteredModel.objects.create(
            project=project,
            name=name,
            model_type=model_type,
            first_registered_at=timezone.now() if registered else None,
            deployed_version=deployed,
        )

    make("alpha", "retrieval", deployed=3)
    make("beta", "ranking")
    empty = make("gamma", "retrieval", registered=False)
    RegisteredModel.objects.create(project=oscars_project, name="theirs", model_type="retrieval")
    api = api_client_for(olivia)

    page = api.get(f"/api/projects/{project.pk}/registered-models/?model_type=retrieval").json()
    assert [m["name"] for m in page["results"]] == ["alpha", "gamma"]
    assert page["kpi"] == {"total": 3, "registered": 2, "with_schedule": 0, "deployed": 1}
    assert [m["status"] for m in page["results"]] == ["registered", "not_registered"]  # no deployment record yet
    assert api.get(f"/api/projects/{project.pk}/registered-models/?has_schedule=true").json()["count"] == 0
    assert api.get(f"/api/projects/{project.pk}/registered-models/?has_schedule=false").json()["count"] == 3
    bad = api.get(f"/api/projects/{project.pk}/registered-models/?model_type=nope")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "model_type"

    detail = api.get(f"/api/registered-models/{empty.pk}/").json()
    assert detail["versions"] == [] and detail["deployment"]["status"] == "none"
    state = api.get(f"/api/registered-models/{empty.pk}/deployment/").json()
    assert (state["status"], state["history"], state["live"]) == ("none", [], None)
    missing = api.post(f"/api/registered-models/{empty.pk}/deploy/", {"version": 1})
    assert missing.status_code == 404 and missing.json()["error"] == "gamma has no version 1"
    assert api.post(f"/api/registered-models/{empty.pk}/undeploy/").json()["error"] == "gamma is not deployed"

    assert api_client_for(oscar).get(f"/api/registered-models/{empty.pk}/").status_code == 404
    assert api_client_for(oscar).get(f"/api/projects/{project.pk}/registered-models/").status_code == 404


def test_the_server_swaps_versions_keeps_the_old_one_when_a_load_fails_and_drops_removed_models(tmp_path):
    from ml_pipeline.serving.store import ModelStore

    loads = []

    class FakeModel:  # stands in for a loaded SavedModel
        load_seconds, buyers = 0.0, None

        def __init__(self, entry):
            if "broken" in entry.path:
                raise ValueError("not a SavedModel")
            self.entry, self.name, self.version = entry, entry.name, entry.version
            loads.append(entry.version)

    config = tmp_path / "models.json"
    store = ModelStore(config, loader=FakeModel)

    def apply(models):
        config.write_text(json.dumps({"models": models}))
        store.poll(force=True)

    def states(name):
        return [(s["version"], s["state"], s["status"]["error_message"]) for s in store.version_status(name)]

    apply({"m": {"path": "/v1", "version": 1}})
    assert store.get("m").version == 1 and states("m") == [("1", "AVAILABLE", "")]
    apply({"m": {"path": "/broken", "version": 2}})
    assert store.get("m").version == 1  # the old version keeps answering
    assert states("m") == [("2", "END", "ValueError: not a SavedModel"), ("1", "AVAILABLE", "")]
    apply({"m": {"path": "/v1", "version": 1}})  # what the platform does after a failed deploy
    assert states("m") == [("1", "AVAILABLE", "")] and loads == [1]  # not reloaded
    apply({"m": {"path": "/v3", "version": 3}, "other": {"path": "/o", "version": 7}})
    assert (store.get("m").version, store.get("other").version) == (3, 7)
    config.write_text("{half a file")
    store.poll(force=True)
    assert store.config_error and store.get("m").version == 3  # a bad config changes nothing
    apply({"other": {"path": "/o", "version": 7}})
    assert store.get("m") is None and store.version_status("m") is None
    assert loads == [1, 3, 7]


def test_a_serving_host_off_loopback_without_a_token_is_a_system_check_warning(settings):
    from django.core import checks

    def serving_checks():
        return [message.id for message in checks.run_checks() if message.id.startswith("deployment.")]

    settings.SERVING_HOST, settings.SERVING_TOKEN = "0.0.0.0", ""
    assert serving_checks() == ["deployment.W001"]
    settings.SERVING_TOKEN = "a-token"
    assert serving_checks() == []
    settings.SERVING_HOST, settings.SERVING_TOKEN, settings.SERVING_MAX_INSTANCES = "127.0.0.1", "", 0
    assert serving_checks() == ["deployment.E001"]
