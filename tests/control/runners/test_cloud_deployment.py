"""The cloud deployment targets against fakes of aiplatform's Model/Endpoint and Cloud Run's ServicesClient that
record every call: upload as a new Model Registry version, deploy with traffic moved, undeploy; TF Serving on
Cloud Run created, then updated."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from google.api_core import exceptions
from google.cloud import aiplatform, run_v2

from ml_platform.core.errors import Invalid
from ml_platform.deployment import cloud
from ml_platform.deployment.targets import ModelToServe, TargetStatus, get_target

CALLS: list[tuple] = []
NAME = "p4-b2b-recs.recs"


@pytest.fixture
def model(tmp_path) -> ModelToServe:
    folder = tmp_path / "serving_model"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"pb")
    return ModelToServe(serving_name=NAME, version=3, model_path=folder, examples_path=tmp_path)


@pytest.fixture(autouse=True)
def staged(monkeypatch):
    CALLS.clear()

    class Stager:
        def upload(self, folder: Path, url: str) -> str:
            CALLS.append(("upload", {"folder": folder.name, "url": url}))
            return url

    monkeypatch.setattr(cloud, "STAGER", Stager())


# --------------------------------------------------------------------------- Vertex AI


class FakeEndpoint:
    deployed: list = []

    def __init__(self, resource_name):
        self.resource_name = resource_name

    @classmethod
    def list(cls, **kwargs):
        CALLS.append(("Endpoint.list", kwargs))
        return [cls("projects/acme-recs/locations/europe-central2/endpoints/77")] if cls.deployed is not None else []

    @classmethod
    def create(cls, **kwargs):
        CALLS.append(("Endpoint.create", kwargs))
        return cls("projects/acme-recs/locations/europe-central2/endpoints/78")

    def list_models(self):
        return list(FakeEndpoint.deployed or [])

    def deploy(self, **kwargs):
        CALLS.append(("deploy", kwargs))

    def undeploy(self, **kwargs):
        CALLS.append(("undeploy", kwargs))

    def undeploy_all(self):
        CALLS.append(("undeploy_all", {}))


class FakeModel:
    @classmethod
    def list(cls, **kwargs):
        CALLS.append(("Model.list", kwargs))
        return [SimpleNamespace(resource_name="projects/acme-recs/locations/europe-central2/models/5")]

    @classmethod
    def upload(cls, **kwargs):
        CALLS.append(("Model.upload", kwargs))
        return SimpleNamespace(resource_name="projects/acme-recs/locations/europe-central2/models/5@3")


@pytest.fixture
def vertex_api(monkeypatch, vertex_configured):
    monkeypatch.setattr(aiplatform, "Endpoint", FakeEndpoint)
    monkeypatch.setattr(aiplatform, "Model", FakeModel)
    FakeEndpoint.deployed = [SimpleNamespace(id="111", display_name="p4-b2b-recs-recs-v2")]
    return vertex_configured


def calls(kind):
    return [call for name, call in CALLS if name == kind]


def test_vertex_uploads_the_version_to_the_model_registry_as_a_new_version_of_its_model(vertex_api, model):
    get_target("vertex_ai").deploy(model)
    assert calls("upload") == [{"folder": "serving_model", "url": f"gs://acme-staging/models/{NAME}/v3/1"}]
    [upload] = calls("Model.upload")
    assert upload["artifact_uri"] == f"gs://acme-staging/models/{NAME}/v3/1"
    assert upload["parent_model"] == "projects/acme-recs/locations/europe-central2/models/5"
    assert upload["version_aliases"] == ["v3"] and upload["is_default_version"] is True
    assert upload["serving_container_image_uri"] == vertex_api.VERTEX_SERVING_IMAGE
    assert (upload["project"], upload["location"]) == ("acme-recs", "europe-central2")


def test_vertex_deploys_with_the_machine_type_and_replica_bounds_and_moves_all_traffic(vertex_api, model):
    vertex_api.VERTEX_ENDPOINT_MACHINE_TYPE, vertex_api.VERTEX_ENDPOINT_MAX_REPLICAS = "n1-standard-8", 4
    status = get_target("vertex_ai").deploy(model)
    [deploy] = calls("deploy")
    assert deploy["machine_type"] == "n1-standard-8"
    assert (deploy["min_replica_count"], deploy["max_replica_count"]) == (1, 4)
    assert deploy["traffic_percentage"] == 100
    assert deploy["deployed_model_display_name"] == "p4-b2b-recs-recs-v3"
    assert calls("undeploy") == [{"deployed_model_id": "111"}]  # the version it replaced, after the switch
    assert [name for name, _ in CALLS].index("deploy") < [name for name, _ in CALLS].index("undeploy")
    assert status.state == TargetStatus.AVAILABLE and status.version == 3
    assert status.endpoint_url.endswith("/endpoints/77:predict")


def test_vertex_makes_the_endpoint_on_first_deploy(vertex_api, model):
    FakeEndpoint.deployed = None  # no endpoint of that name yet
    get_target("vertex_ai").deploy(model)
    assert calls("Endpoint.create") == [
        {"display_name": "p4-b2b-recs-recs", "project": "acme-recs", "location": "europe-central2"}
    ]


def test_vertex_undeploy_takes_every_version_off_the_endpoint(vertex_api):
    assert get_target("vertex_ai").undeploy(NAME).state == TargetStatus.ABSENT
    assert calls("undeploy_all") == [{}]


def test_vertex_status_names_the_deployed_version(vertex_api):
    status = get_target("vertex_ai").status(NAME)
    assert (status.state, status.version) == (TargetStatus.AVAILABLE, 2)


def test_a_model_the_pusher_wrote_to_the_bucket_is_served_from_there(vertex_api, model):
    pushed = ModelToServe(NAME, 3, Path("/gcs/acme-staging/pipelines/artifacts/pushed/recs/3"), Path("/tmp"))
    get_target("vertex_ai").deploy(pushed)
    assert calls("upload") == []
    assert calls("Model.upload")[0]["artifact_uri"] == "gs://acme-staging/pipelines/artifacts/pushed/recs/3"


# --------------------------------------------------------------------------- Cloud Run


class FakeServices:
    existing: dict = {}

    def get_service(self, name):
        CALLS.append(("get_service", {"name": name}))
        if name not in FakeServices.existing:
            raise exceptions.NotFound("no such service")
        return FakeServices.existing[name]

    def _done(self, service):
        served = SimpleNamespace(uri="https://p4-b2b-recs-recs-xyz.a.run.app", labels=service.labels, reconciling=False)
        return SimpleNamespace(result=lambda timeout=None: served)

    def create_service(self, parent, service, service_id):
        CALLS.append(("create_service", {"parent": parent, "service": service, "service_id": service_id}))
        return self._done(service)

    def update_service(self, service):
        CALLS.append(("update_service", {"service": service}))
        return self._done(service)

    def delete_service(self, name):
        CALLS.append(("delete_service", {"name": name}))
        return SimpleNamespace(result=lambda timeout=None: None)


@pytest.fixture
def cloud_run(monkeypatch, vertex_configured):
    monkeypatch.setattr(run_v2, "ServicesClient", FakeServices)
    FakeServices.existing = {}
    return vertex_configured


SERVICE = "projects/acme-recs/locations/europe-central2/services/p4-b2b-recs-recs"


def test_cloud_run_creates_a_tf_serving_service_on_the_versions_base_path(cloud_run, model):
    status = get_target("cloud_run").deploy(model)
    [create] = calls("create_service")
    assert create["parent"] == "projects/acme-recs/locations/europe-central2"
    assert create["service_id"] == "p4-b2b-recs-recs"
    container = create["service"].template.containers[0]
    assert container.image == "docker.io/tensorflow/serving:2.20.0"
    assert list(container.args) == [
        "--rest_api_port=8080",
        "--port=8500",
        f"--model_name={NAME}",
        f"--model_base_path=gs://acme-staging/models/{NAME}/v3",
    ]
    assert container.ports[0].container_port == 8080
    traffic = create["service"].traffic[0]
    assert traffic.percent == 100
    assert traffic.type_ == run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
    assert create["service"].template.service_account == cloud_run.CLOUD_SERVICE_ACCOUNT
    assert status.endpoint_url == f"https://p4-b2b-recs-recs-xyz.a.run.app/v1/models/{NAME}"


def test_cloud_run_updates_the_service_a_version_already_runs_as(cloud_run, model):
    FakeServices.existing = {SERVICE: SimpleNamespace(labels={"ml-platform-version": "2"})}
    get_target("cloud_run").deploy(model)
    assert calls("create_service") == []
    [update] = calls("update_service")
    assert update["service"].name == SERVICE
    assert update["service"].labels["ml-platform-version"] == "3"


def test_cloud_run_undeploy_deletes_the_service(cloud_run):
    assert get_target("cloud_run").undeploy(NAME).state == TargetStatus.ABSENT
    assert calls("delete_service") == [{"name": SERVICE}]


def test_cloud_targets_are_refused_naming_the_settings_they_lack():
    with pytest.raises(Invalid) as refused:
        get_target("cloud_run")
    [problem] = refused.value.problems
    assert problem.field == "target"
    assert "set CLOUD_PROJECT_ID, CLOUD_DATA_REGION, CLOUD_STAGING_BUCKET" in problem.message
