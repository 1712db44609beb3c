"""Deploys, rollbacks and undeploys are recorded by the web server and carried out by the worker.

A fake target stands in for the serving process (the real one is
test_deployment.py's story): it serves what it is told, and refuses the
versions a test says it cannot load.
"""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from ml_platform.core import clock
from ml_platform.deployment import jobs, targets
from ml_platform.deployment.models import Deployment
from ml_platform.deployment.targets import DeploymentFailed, DeploymentTarget, TargetStatus
from ml_platform.registry.services import push_to_registry
from ml_platform.training.models import TrainingRun
from ml_platform.training.worker import Worker

pytestmark = pytest.mark.django_db


class FakeTarget(DeploymentTarget):
    """Remembers which version each name serves; ``broken`` versions fail to load, as a bad SavedModel does."""

    name, label = "local", "Fake endpoint"
    served: dict[str, int] = {}
    broken: set[int] = set()
    deploys: list[int] = []

    def deploy(self, model):
        self.deploys.append(model.version)
        if model.version in self.broken:
            raise DeploymentFailed(f"the serving process could not load version {model.version}: bad SavedModel")
        self.served[model.serving_name] = model.version
        return self.status(model.serving_name)

    def undeploy(self, serving_name):
        self.served.pop(serving_name, None)
        return self.status(serving_name)

    def status(self, serving_name):
        version = self.served.get(serving_name)
        if version is None:
            return TargetStatus(TargetStatus.ABSENT)
        return TargetStatus(TargetStatus.AVAILABLE, version, f"http://serving.test/v1/models/{serving_name}")


class FakeProcess:
    def __init__(self, command):
        self.command, self.returncode, self.terminated = command, None, False

    def poll(self):
        return self.returncode

    def terminate(self):
        self.terminated, self.returncode = True, -15

    def wait(self, timeout=None):
        return self.returncode


@pytest.fixture(autouse=True)
def fake_serving(monkeypatch):
    FakeTarget.served, FakeTarget.broken, FakeTarget.deploys = {}, set(), []
    monkeypatch.setattr(targets, "available_targets", lambda: {"local": FakeTarget})


@pytest.fixture
def versions(api, project, run_body, tmp_path):
    """A registered model with versions 1, 2 and 3 whose files are there; its id."""

    def version() -> TrainingRun:
        run_id = api.post(f"/api/projects/{project.id}/training-runs/", run_body).json()["id"]
        base = Path(tmp_path) / f"run-{run_id}"
        (base / "Pusher" / "output" / "serving_model").mkdir(parents=True)
        (base / "Pusher" / "output" / "serving_model" / "saved_model.pb").write_bytes(b"")
        (base / "ExampleGen" / "output").mkdir(parents=True)
        TrainingRun.objects.filter(pk=run_id).update(
            status=TrainingRun.COMPLETED,
            blessed=True,
            completed_at=timezone.now(),
            mlflow_run_id="",
            artifacts={
                "Pusher": {"uri": str(base / "Pusher"), "type": "PushedModel", "producer": "Pusher"},
                "ExampleGen": {"uri": str(base / "ExampleGen"), "type": "Examples", "producer": "ExampleGen"},
            },
        )
        return push_to_registry(TrainingRun.objects.get(pk=run_id))

    return [version() for _ in range(3)][0].registered_model_id


def deploy(api, model: int, version: int):
    return api.post(f"/api/registered-models/{model}/deploy/", {"version": version})


def carried_out(api, model: int) -> dict:
    """The worker's part, here: carry out the model's pending request; the deployment as the API shows it."""
    jobs.carry_out(Deployment.objects.get(registered_model_id=model).pk)
    return api.get(f"/api/registered-models/{model}/deployment/").json()


def test_a_deploy_request_returns_before_the_model_is_loaded(api, versions):
    answer = deploy(api, versions, 1)
    assert answer.status_code == 200, answer.content
    state = answer.json()
    assert (state["state"], state["pending"]["action"], state["pending"]["version"]) == ("loading", "deploy", 1)
    assert FakeTarget.deploys == []  # the target was not asked yet: the worker does that
    served = carried_out(api, versions)
    assert (served["state"], served["status"], served["version"], served["pending"]) == ("serving", "deployed", 1, None)


def test_a_failed_load_leaves_the_previous_version_serving_and_says_why(api, versions):
    deploy(api, versions, 1)
    carried_out(api, versions)
    FakeTarget.broken = {2}
    assert deploy(api, versions, 2).json()["state"] == "loading"
    state = carried_out(api, versions)
    assert (state["state"], state["status"], state["version"]) == ("failed", "deployed", 1)
    assert "could not load version 2" in state["message"] and "version 1 is still deployed" in state["message"]
    assert FakeTarget.served == {state["serving_name"]: 1}


def test_rollback_and_undeploy_are_carried_out_by_the_worker_too(api, versions):
    for version in (1, 2):
        deploy(api, versions, version)
        carried_out(api, versions)
    asked = api.post(f"/api/registered-models/{versions}/rollback/").json()
    assert (asked["state"], asked["pending"]["action"], asked["pending"]["version"]) == ("loading", "rollback", 1)
    assert carried_out(api, versions)["version"] == 1
    asked = api.post(f"/api/registered-models/{versions}/undeploy/").json()
    assert (asked["state"], asked["pending"]["action"]) == ("stopping", "undeploy")
    assert (carried_out(api, versions)["state"], FakeTarget.served) == ("none", {})


def test_a_second_request_while_one_is_pending_is_a_conflict(api, versions):
    deploy(api, versions, 1)
    refused = deploy(api, versions, 2)
    assert refused.status_code == 409 and "in progress" in refused.json()["error"]


def test_one_worker_claims_a_request_and_carries_it_out_in_a_child_process(api, versions):
    deploy(api, versions, 1)
    started = []
    first = jobs.Carrier("worker-a", popen=lambda command: started.append(FakeProcess(command)) or started[-1])
    second = jobs.Carrier("worker-b", popen=lambda command: pytest.fail("claimed twice"))
    assert (first.step(), second.step()) == (1, 0)
    [process] = started
    deployment_id = Deployment.objects.get(registered_model_id=versions).pk
    assert process.command[-2:] == ["run_deployment", str(deployment_id)]
    assert Deployment.objects.get(pk=deployment_id).claimed_by == "worker-a"


def test_a_child_that_dies_fails_its_request_with_the_reason(api, versions):
    deploy(api, versions, 1)
    started = []
    carrier = jobs.Carrier("worker-a", popen=lambda command: started.append(FakeProcess(command)) or started[-1])
    carrier.step()
    started[0].returncode = 1
    carrier.step()
    state = api.get(f"/api/registered-models/{versions}/deployment/").json()
    assert (state["state"], state["pending"]) == ("failed", None)
    assert "its process ended with code 1" in state["message"]


def test_a_stopping_worker_gives_its_request_back_and_a_stale_claim_is_taken_again(api, versions):
    deploy(api, versions, 1)
    started = []
    carrier = jobs.Carrier("worker-a", popen=lambda command: started.append(FakeProcess(command)) or started[-1])
    carrier.step()
    carrier.stop()
    assert started[0].terminated
    deployment = Deployment.objects.get(registered_model_id=versions)
    assert (deployment.pending_action, deployment.claimed_by) == ("deploy", "")

    assert jobs.claim("worker-b") is not None
    Deployment.objects.filter(pk=deployment.pk).update(claimed_at=clock.now() - timedelta(hours=1))
    assert jobs.claim("worker-c").claimed_by == "worker-c"  # worker-b stopped refreshing its claim


def test_the_worker_loop_carries_out_requests(api, versions):
    deploy(api, versions, 1)
    worker = Worker()
    started = []
    worker.deployments.popen = lambda command: started.append(FakeProcess(command)) or started[-1]
    worker.step()
    assert started and started[0].command[-2] == "run_deployment"
    worker.shutdown()
