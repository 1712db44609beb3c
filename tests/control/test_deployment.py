"""Deploying registered versions to the local serving endpoint: a real server process, real HTTP requests.

Two small runs are trained and registered (versions 1 and 2); the API deploys
version 1, replaces it with version 2, rolls back to 1 and undeploys, and
after each step the serving process itself is asked what it serves. The
server is stopped at teardown and must be gone.
"""

import json
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
from django.conf import settings as django_settings

from ml_platform.deployment import local
from ml_platform.deployment.models import Deployment, DeploymentEvent
from ml_platform.registry.models import RegisteredModel
from ml_platform.registry.services import push_to_registry
from ml_platform.training.models import TrainingRun
from ml_platform.training.worker import Worker
from tests.conftest import api_client_for
from tests.control.test_training_worker import catalog, drive, pid_alive, queue_run  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SERVING_TOKEN = "deploy-test-token"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def serving(settings):
    """A fresh serving folder and a free loopback port; the server is stopped (and must be gone) afterwards."""
    local.stop_server()
    shutil.rmtree(Path(django_settings.DATA_DIR) / "serving", ignore_errors=True)
    settings.SERVING_HOST = "127.0.0.1"
    settings.SERVING_PORT = free_port()
    settings.SERVING_LOAD_TIMEOUT = 120
    settings.SERVING_TOKEN = SERVING_TOKEN  # so every call the platform makes below must send it
    yield f"http://127.0.0.1:{settings.SERVING_PORT}"
    info = local.read_pidfile()
    local.stop_server()
    if info is not None:
        deadline = time.monotonic() + 5
        while pid_alive(info.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(info.pid), "the serving process outlived the test"
    assert local.read_pidfile() is None


def get(url):
    return local.http_json("GET", url, timeout=30)


def post(url, body):
    return local.http_json("POST", url, body, timeout=30)


def anonymous(method, url) -> int:
    """The status of a request without the platform's token."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_platform_restarts_a_server_that_runs_with_another_token_or_other_limits(serving, settings):
    first = local.ensure_server()
    health = local.healthz(first.host, first.port)
    assert health["pid"] == first.pid
    assert health["options"] == {"auth": True, "max_body_bytes": 4 * 1024 * 1024, "max_instances": 1000}
    assert local.ensure_server().pid == first.pid  # as configured: kept

    settings.SERVING_TOKEN = "another-token"
    second = local.ensure_server()
    assert second.pid != first.pid and not pid_alive(first.pid)
    assert local.server_status()["answering"]
    assert anonymous("GET", f"{serving}/v1/models/anything") == 401

    settings.SERVING_MAX_INSTANCES = 10
    third = local.ensure_server()
    assert third.pid != second.pid and local.healthz(third.host, third.port)["options"]["max_instances"] == 10


def test_deploy_replace_rollback_and_undeploy_on_the_local_endpoint(project, olivia, mark, oscar, catalog,  # noqa: F811
                                                                     serving):
    worker = Worker()
    first = drive(worker, queue_run(project, olivia, catalog), lambda r: r.is_terminal)
    assert first.status == TrainingRun.COMPLETED, first.error_message
    first = push_to_registry(first)
    second = push_to_registry(drive(worker, queue_run(project, olivia, catalog), lambda r: r.is_terminal))
    assert (first.registry_version, second.registry_version) == (1, 2)
    registered = first.registered_model
    api, url = api_client_for(olivia), f"/api/registered-models/{registered.pk}"

    # Vertex AI and Cloud Run are not available yet: a clear 422 on the target field.
    refused = api.post(f"{url}/deploy/", {"version": 1, "target": "vertex_ai"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "target"
    assert "Vertex AI" in refused.json()["errors"][0]["message"]

    # -- deploy version 1: the platform starts the server and waits until the model answers
    response = api.post(f"{url}/deploy/", {"version": 1})
    assert response.status_code == 200, response.content
    state = response.json()
    name = state["serving_name"]
    assert name == f"p{project.id}-b2b-recs.recs"
    assert (state["status"], state["version"], state["target"]) == ("deployed", 1, "local")
    assert state["endpoint_url"] == f"{serving}/v1/models/{name}"
    assert state["live"]["state"] == "available" and state["rollback_version"] is None
    assert get(state["endpoint_url"]) == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    health = get(f"{serving}/healthz")[1]
    assert health["models"][name]["version"] == 1
    assert anonymous("GET", state["endpoint_url"]) == 401  # the platform's calls above all sent the token

    examples = Path(first.artifacts["ExampleGen"]["uri"]) / "output"
    catalog_ids = set(pq.read_table(examples / "catalog.parquet", columns=["product_id"]).column(0).to_pylist())
    train = pq.read_table(examples / "train").to_pylist()
    row = train[0]
    buyer = row["buyer_id"]

    code, answer = get(f"{serving}/recommend?buyer_id={quote(buyer)}&k=5")
    assert code == 200, answer
    assert (answer["buyer_id"], answer["model"], answer["version"]) == (buyer, name, 1)
    ids = [r["product_id"] for r in answer["recommendations"]]
    scores = [r["score"] for r in answer["recommendations"]]
    assert len(ids) == 5 and len(set(ids)) == 5 and set(ids) <= catalog_ids
    assert scores == sorted(scores, reverse=True)

    # TF Serving's row and columnar formats, by the input names of the signature
    features = {"buyer_id": buyer, "buyer_segment": row["buyer_segment"], "buyer_city": row["buyer_city"],
                "timestamp": int(row["timestamp"].timestamp())}
    code, answer = post(state["predict_url"], {"signature_name": "serving_default", "instances": [features]})
    assert code == 200, answer
    [prediction] = answer["predictions"]
    assert set(prediction) == {"product_ids", "scores"}
    assert set(prediction["product_ids"]) <= catalog_ids
    assert prediction["scores"] == sorted(prediction["scores"], reverse=True)
    code, answer = post(state["predict_url"], {"inputs": {k: [v, v] for k, v in features.items()},
                                               "signature_name": "query_embedding"})
    assert code == 200 and len(answer["outputs"]) == 2  # one output: the bare value, as TF Serving answers
    code, answer = post(state["predict_url"], {"instances": [{k: v for k, v in features.items() if k != "buyer_city"}]})
    assert code == 400 and "missing input 'buyer_city'" in answer["error"]
    code, answer = get(f"{serving}/recommend?buyer_id=nobody-at-all&k=5")
    assert code == 404 and "unknown buyer 'nobody-at-all'" in answer["error"]

    # -- deploy version 2: it replaces version 1 (one deployed version per registered model)
    response = api.post(f"{url}/deploy/", {"version": 2})
    assert response.status_code == 200, response.content
    assert (response.json()["version"], response.json()["rollback_version"]) == (2, 1)
    assert get(state["endpoint_url"])[1]["model_version_status"][0]["version"] == "2"
    assert get(f"{serving}/recommend?buyer_id={quote(buyer)}&k=3")[1]["version"] == 2
    assert list(local.read_models_config()["models"]) == [name]
    registered.refresh_from_db()
    assert registered.deployed_version == 2
    again = api.post(f"{url}/deploy/", {"version": 2})
    assert again.status_code == 409 and "already deployed" in again.json()["error"]

    # -- rollback: back to version 1, which the server answers with
    response = api.post(f"{url}/rollback/")
    assert response.status_code == 200, response.content
    state = response.json()
    assert (state["status"], state["version"], state["rollback_version"]) == ("deployed", 1, None)
    assert get(f"{serving}/recommend?buyer_id={quote(buyer)}&k=5")[1]["version"] == 1
    assert [(e["action"], e["version"], e["previous_version"]) for e in state["history"]] == [
        ("rollback", 1, 2), ("deploy", 2, 1), ("deploy", 1, None)]
    assert state["history"][0]["user"] == "olivia"
    no_earlier = api.post(f"{url}/rollback/")
    assert no_earlier.status_code == 409 and "No earlier version" in no_earlier.json()["error"]

    # -- a version the server cannot load: 502 naming why, and version 1 keeps serving
    broken = Path(django_settings.DATA_DIR) / "broken-push"
    shutil.copytree(first.serving_model_path, broken / "output" / "serving_model")
    (broken / "output" / "serving_model" / "saved_model.pb").write_bytes(b"not a SavedModel")
    third = TrainingRun.objects.get(pk=first.pk)
    third.pk, third.run_number, third.registry_version = None, 99, 3
    third.artifacts = {**first.artifacts, "Pusher": {**first.artifacts["Pusher"], "uri": str(broken)}}
    third.save()
    failed = api.post(f"{url}/deploy/", {"version": 3})
    assert failed.status_code == 502 and "could not load version 3" in failed.json()["error"]
    state = api.get(f"{url}/deployment/").json()
    assert (state["status"], state["version"]) == ("deployed", 1)
    assert (state["live"]["state"], state["live"]["version"]) == ("available", 1)
    assert "version 1 is still deployed" in state["message"]
    assert (state["history"][0]["action"], state["history"][0]["succeeded"]) == ("deploy", False)
    assert get(f"{serving}/recommend?buyer_id={quote(buyer)}&k=5")[1]["version"] == 1

    # members see the deployment; outsiders cannot tell the model exists
    assert api_client_for(mark).get(f"{url}/deployment/").json()["version"] == 1
    outsider = api_client_for(oscar)
    for response in (outsider.get(f"{url}/deployment/"), outsider.post(f"{url}/deploy/", {"version": 1}),
                     outsider.post(f"{url}/undeploy/"), outsider.post(f"{url}/rollback/"), outsider.get(f"{url}/")):
        assert response.status_code == 404

    # the registry's views of it
    listed = api.get(f"/api/projects/{project.pk}/registered-models/").json()
    assert listed["kpi"] == {"total": 1, "registered": 1, "with_schedule": 0, "deployed": 1}
    assert listed["results"][0]["status"] == "deployed"
    detail = api.get(f"{url}/").json()
    assert [(v["version"], v["is_deployed"], v["deployable"]) for v in detail["versions"]] == [
        (3, False, True), (2, False, True), (1, True, True)]

    # -- undeploy: the endpoint no longer knows the model
    response = api.post(f"{url}/undeploy/")
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["version"]) == ("none", None)
    code, answer = get(state["endpoint_url"])
    assert code == 404 and f"no model '{name}'" in answer["error"]
    assert get(f"{serving}/recommend?model={name}&buyer_id={quote(buyer)}")[0] == 404
    registered.refresh_from_db()
    assert registered.deployed_version is None
    assert api.post(f"{url}/undeploy/").status_code == 409
    assert api.post(f"{url}/rollback/").status_code == 409

    missing = api.post(f"{url}/deploy/", {"version": 99})
    assert missing.status_code == 404 and missing.json()["error"] == "recs has no version 99"
    assert DeploymentEvent.objects.filter(registered_model=registered).count() == 5
    assert Deployment.objects.get(registered_model=registered).status == Deployment.NONE


def test_registered_models_list_filters_and_access(project, olivia, oscar, oscars_project):
    def make(name, model_type, registered=True, deployed=None):
        from django.utils import timezone

        return RegisteredModel.objects.create(project=project, name=name, model_type=model_type,
                                              first_registered_at=timezone.now() if registered else None,
                                              deployed_version=deployed)

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
    from ml_pipeline.serving_server import ModelStore

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
