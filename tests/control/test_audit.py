"""The audit trail: every state-changing action is recorded once, with who, what, when and from where.

Each action is done through the API (Olivia's token, or her browser session
where the API wants one) and must leave exactly one new event naming her, the
action, the object and the client's address; a refused action leaves none.
Runs are queued, not executed: where an action needs a finished, blessed or
registered run, the test sets that state on the row, and deployments go to a
fake target that serves nothing.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory
from django.utils import timezone

from ml_platform.accounts.models import ApiToken
from ml_platform.audit import services as audit
from ml_platform.audit.models import AuditEvent
from ml_platform.datasets.models import Dataset
from ml_platform.deployment import targets
from ml_platform.deployment.targets import DeploymentTarget, TargetStatus
from ml_platform.registry.services import push_to_registry
from ml_platform.training.models import TrainingRun
from tests.helpers import PASSWORD, JsonClient, api_client_for, carry_out_deployments, make_user
from tests.helpers import post_webhook as webhook

pytestmark = pytest.mark.django_db


def new_events(since: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(pk__gt=since).order_by("pk"))


def last_id() -> int:
    return AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def session_client(username: str) -> JsonClient:
    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    return JsonClient(client)


class FakeTarget(DeploymentTarget):
    """Serves nothing: remembers which version each name would serve."""

    name, label = "local", "Fake endpoint"
    served: dict[str, int] = {}

    def deploy(self, model):
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


@pytest.fixture
def fake_serving(monkeypatch):
    FakeTarget.served = {}
    monkeypatch.setattr(targets, "available_targets", lambda: {"local": FakeTarget})


def finished(run_id: int, folder: Path, **fields) -> TrainingRun:
    """Make a queued run look completed and blessed, with a serving model and ExampleGen output on disk."""
    pusher, examples = folder / f"run-{run_id}" / "Pusher", folder / f"run-{run_id}" / "ExampleGen"
    (pusher / "output" / "serving_model").mkdir(parents=True)
    (pusher / "output" / "serving_model" / "saved_model.pb").write_bytes(b"")
    (examples / "output").mkdir(parents=True)
    TrainingRun.objects.filter(pk=run_id).update(
        status=TrainingRun.COMPLETED,
        blessed=True,
        completed_at=timezone.now(),
        mlflow_run_id="",
        artifacts={
            "Pusher": {"uri": str(pusher), "type": "PushedModel", "producer": "Pusher"},
            "ExampleGen": {"uri": str(examples), "type": "Examples", "producer": "ExampleGen"},
        },
        **fields,
    )
    return TrainingRun.objects.get(pk=run_id)


@pytest.fixture
def ctx(api, project, dataset, feature_config, retrieval, run_body, olivia, purchases_csv, tmp_path, fake_serving):
    source, mapping = dataset["source"], dataset["mapping"]
    return SimpleNamespace(
        api=api,
        session=session_client("olivia"),
        project=project,
        dataset=dataset,
        fc=feature_config,
        mc=retrieval,
        run_body=run_body,
        olivia=olivia,
        tmp=tmp_path,
        csv=purchases_csv,
        dataset_body=lambda name: {"name": name, "source": source, "mapping": mapping},
        experiment_body={key: run_body[key] for key in ("dataset_id", "feature_config_id", "model_config_id")},
    )


def queued_run(ctx) -> dict:
    response = ctx.api.post(f"/api/projects/{ctx.project.id}/training-runs/", ctx.run_body)
    assert response.status_code == 201, response.content
    return response.json()


def queued_experiment(ctx) -> dict:
    response = ctx.api.post(f"/api/projects/{ctx.project.id}/experiments/", ctx.experiment_body)
    assert response.status_code == 201, response.content
    return response.json()


def cancelled(ctx, run: dict, kind: str = "training-runs") -> dict:
    assert ctx.api.post(f"/api/{kind}/{run['id']}/cancel/").status_code == 200
    return run


def registered_version(ctx) -> TrainingRun:
    return push_to_registry(finished(queued_run(ctx)["id"], ctx.tmp))


# --------------------------------------------------------------------------- each kind of action
# Each case prepares what its action needs (before the trail is looked at) and returns the action and the
# id of the object it must be recorded against (ANSWER: the id in the action's answer).

ACTIONS: dict = {}
ANSWER = "the answer's id"


def case(name: str, action: str, object_type: str):
    def register(prepare):
        ACTIONS[name] = (action, object_type, prepare)
        return prepare

    return register


@case("create a project", "create", "projects.project")
def create_project(c):
    return (lambda: c.api.post("/api/projects/", {"name": "new-recs"})), ANSWER


@case("edit a project", "update", "projects.project")
def edit_project(c):
    return (lambda: c.api.patch(f"/api/projects/{c.project.id}/", {"description": "new"})), c.project.id


@case("delete a project", "delete", "projects.project")
def delete_project(c):
    return (lambda: c.api.delete(f"/api/projects/{c.project.id}/")), c.project.id


@case("add a member", "member.add", "projects.project")
def add_member(c):
    make_user("nina")
    return (lambda: c.api.post(f"/api/projects/{c.project.id}/members/", {"username": "nina"})), c.project.id


@case("change a member's role", "member.change", "projects.project")
def change_role(c):
    body = {"username": "mark", "role": "owner"}
    return (lambda: c.api.post(f"/api/projects/{c.project.id}/members/", body)), c.project.id


@case("issue a token", "token.issue", "accounts.apitoken")
def issue_token(c):
    return (lambda: c.session.post("/api/tokens/", {"name": "laptop"})), ANSWER


@case("revoke a token", "token.revoke", "accounts.apitoken")
def revoke_token(c):
    token = c.session.post("/api/tokens/", {"name": "old"}).json()["id"]
    return (lambda: c.session.delete(f"/api/tokens/{token}/")), token


@case("upload a file", "upload", "datasets.upload")
def upload_file(c):
    return (lambda: c.api.upload(f"/api/projects/{c.project.id}/uploads/", c.csv)), ANSWER


@case("create a dataset", "create", "datasets.dataset")
def create_dataset(c):
    return (lambda: c.api.post(f"/api/projects/{c.project.id}/datasets/", c.dataset_body("again"))), ANSWER


@case("edit a dataset", "update", "datasets.dataset")
def edit_dataset(c):
    return (lambda: c.api.patch(f"/api/datasets/{c.dataset['id']}/", {"description": "weekly"})), c.dataset["id"]


@case("refresh a dataset's preview", "refresh", "datasets.dataset")
def refresh_preview(c):
    return (lambda: c.api.post(f"/api/datasets/{c.dataset['id']}/preview/")), c.dataset["id"]


@case("delete a dataset", "delete", "datasets.dataset")
def delete_dataset(c):
    spare = c.api.post(f"/api/projects/{c.project.id}/datasets/", c.dataset_body("spare")).json()["id"]
    return (lambda: c.api.delete(f"/api/datasets/{spare}/")), spare


@case("create a feature config", "create", "modeling.featureconfig")
def create_feature_config(c):
    body = {"name": "copy", "dataset_id": c.dataset["id"], "config": c.fc["config"]}
    return (lambda: c.api.post(f"/api/projects/{c.project.id}/feature-configs/", body)), ANSWER


@case("edit a feature config", "update", "modeling.featureconfig")
def edit_feature_config(c):
    return (lambda: c.api.patch(f"/api/feature-configs/{c.fc['id']}/", {"description": "v2"})), c.fc["id"]


@case("delete a feature config", "delete", "modeling.featureconfig")
def delete_feature_config(c):
    body = {"name": "spare", "dataset_id": c.dataset["id"], "config": c.fc["config"]}
    spare = c.api.post(f"/api/projects/{c.project.id}/feature-configs/", body).json()["id"]
    return (lambda: c.api.delete(f"/api/feature-configs/{spare}/")), spare


@case("create a model config", "create", "modeling.modelconfig")
def create_model_config(c):
    body = {"name": "ranker", "config": {"model_type": "ranking"}}
    return (lambda: c.api.post(f"/api/projects/{c.project.id}/model-configs/", body)), ANSWER


@case("edit a model config", "update", "modeling.modelconfig")
def edit_model_config(c):
    return (lambda: c.api.patch(f"/api/model-configs/{c.mc['id']}/", {"description": "v2"})), c.mc["id"]


@case("delete a model config", "delete", "modeling.modelconfig")
def delete_model_config(c):
    body = {"name": "spare", "config": {"model_type": "ranking"}}
    spare = c.api.post(f"/api/projects/{c.project.id}/model-configs/", body).json()["id"]
    return (lambda: c.api.delete(f"/api/model-configs/{spare}/")), spare


@case("create a training run", "create", "training.trainingrun")
def create_run(c):
    return (lambda: c.api.post(f"/api/projects/{c.project.id}/training-runs/", c.run_body)), ANSWER


@case("cancel a training run", "cancel", "training.trainingrun")
def cancel_run(c):
    run = queued_run(c)["id"]
    return (lambda: c.api.post(f"/api/training-runs/{run}/cancel/")), run


@case("delete a training run", "delete", "training.trainingrun")
def delete_run(c):
    run = cancelled(c, queued_run(c))["id"]
    return (lambda: c.api.delete(f"/api/training-runs/{run}/")), run


@case("rerun a training run", "rerun", "training.trainingrun")
def rerun_run(c):
    run = cancelled(c, queued_run(c))["id"]
    return (lambda: c.api.post(f"/api/training-runs/{run}/rerun/", {"from_stage": "Trainer"})), ANSWER


@case("edit a run's parameters", "update", "training.trainingrun")
def edit_run(c):
    run = cancelled(c, queued_run(c))["id"]
    body = {"training_params": {"epochs": 3, "batch_size": 64}}
    return (lambda: c.api.patch(f"/api/training-runs/{run}/config/", body)), run


@case("create an experiment", "create", "training.trainingrun")
def create_experiment(c):
    return (lambda: c.api.post(f"/api/projects/{c.project.id}/experiments/", c.experiment_body)), ANSWER


@case("cancel an experiment", "cancel", "training.trainingrun")
def cancel_experiment(c):
    experiment = queued_experiment(c)["id"]
    return (lambda: c.api.post(f"/api/experiments/{experiment}/cancel/")), experiment


@case("delete an experiment", "delete", "training.trainingrun")
def delete_experiment(c):
    experiment = cancelled(c, queued_experiment(c), "experiments")["id"]
    return (lambda: c.api.delete(f"/api/experiments/{experiment}/")), experiment


@case("rerun an experiment", "rerun", "training.trainingrun")
def rerun_experiment(c):
    experiment = cancelled(c, queued_experiment(c), "experiments")["id"]
    return (lambda: c.api.post(f"/api/experiments/{experiment}/rerun/")), ANSWER


@case("promote an experiment", "promote", "training.trainingrun")
def promote_experiment(c):
    experiment = queued_experiment(c)["id"]
    TrainingRun.objects.filter(pk=experiment).update(status=TrainingRun.COMPLETED)
    return (lambda: c.api.post(f"/api/experiments/{experiment}/promote/", {"name": "recs"})), ANSWER


@case("push a run to the registry", "push", "training.trainingrun")
def push_run(c):
    run = finished(queued_run(c)["id"], c.tmp).pk
    return (lambda: c.api.post(f"/api/training-runs/{run}/push/")), run


@case("deploy a version", "deploy", "registry.registeredmodel")
def deploy_version(c):
    model = registered_version(c).registered_model_id
    return (lambda: c.api.post(f"/api/registered-models/{model}/deploy/", {"version": 1})), model


@case("deploy a run's version", "deploy", "registry.registeredmodel")
def deploy_run(c):
    run = registered_version(c)
    return (lambda: c.api.post(f"/api/training-runs/{run.pk}/deploy/")), run.registered_model_id


@case("undeploy a model", "undeploy", "registry.registeredmodel")
def undeploy_model(c):
    model = registered_version(c).registered_model_id
    assert c.api.post(f"/api/registered-models/{model}/deploy/", {"version": 1}).status_code == 200
    carry_out_deployments()
    return (lambda: c.api.post(f"/api/registered-models/{model}/undeploy/")), model


@case("roll a model back", "rollback", "registry.registeredmodel")
def roll_back(c):
    model = registered_version(c).registered_model_id
    registered_version(c)
    for version in (1, 2):
        assert c.api.post(f"/api/registered-models/{model}/deploy/", {"version": version}).status_code == 200
        carry_out_deployments()
    return (lambda: c.api.post(f"/api/registered-models/{model}/rollback/")), model


@pytest.mark.parametrize("name", ACTIONS)
def test_each_action_records_one_event_with_its_actor_object_and_address(ctx, name):
    action, object_type, prepare = ACTIONS[name]
    act, object_id = prepare(ctx)
    since = last_id()
    response = act()
    assert response.status_code < 300, response.content
    events = new_events(since)
    assert len(events) == 1, [str(e) for e in events]
    [event] = events
    if object_id == ANSWER:
        object_id = response.json()["id"]
    assert (event.action, event.object_type, event.object_id) == (action, object_type, object_id)
    assert (event.actor_id, event.actor_label, event.address) == (ctx.olivia.pk, "olivia", "127.0.0.1")
    by_session = object_type == "accounts.apitoken"  # tokens are issued from a session only
    assert (event.via, event.token_name) == (("session", "") if by_session else ("token", "tests"))
    if not by_session:
        assert event.project_id == (object_id if name == "create a project" else ctx.project.id)


def test_an_event_keeps_what_changed(api, dataset):
    api.patch(f"/api/datasets/{dataset['id']}/", {"description": "weekly", "filters": {"exclude_buyers": ["c3"]}})
    event = AuditEvent.objects.get(action="update")
    assert event.changes == {"description": "weekly", "filters": {"exclude_buyers": ["c3"]}}
    assert event.object_label == "purchases" and event.project_label == "b2b-recs"


def test_a_remote_runner_ending_a_run_is_recorded_once(ctx):
    run = TrainingRun.objects.get(pk=queued_run(ctx)["id"])
    since = last_id()
    finished_event = {"event": "run_finished", "status": "completed", "summary": {"blessed": True}}
    for _ in range(2):  # the runner's report, then the same report again as a new delivery
        assert webhook(run, "completed", finished_event).status_code == 200
    [event] = new_events(since)
    assert (event.actor, event.actor_label, event.via, event.address) == (None, "remote runner", "system", "127.0.0.1")
    assert (event.action, event.object_id, event.changes) == ("finish", run.pk, {"status": "completed"})


def test_a_system_actor_is_recorded_by_name(dataset):
    event = audit.record(audit.WORKER, audit.Action.REFRESH, Dataset.objects.get(pk=dataset["id"]))
    assert (event.actor, event.actor_label, event.via, event.address) == (None, "worker", "system", None)


# --------------------------------------------------------------------------- refused actions
# Each case prepares and returns the action that must be refused (4xx) and leave no event.

REFUSED = {
    "an invalid mapping": lambda c: (
        lambda: c.api.patch(f"/api/datasets/{c.dataset['id']}/", {"mapping": {"buyer_id": "nope"}})
    ),
    "deleting a dataset still in use": lambda c: lambda: c.api.delete(f"/api/datasets/{c.dataset['id']}/"),
    "an invalid model config": lambda c: (
        lambda: c.api.post(
            f"/api/projects/{c.project.id}/model-configs/", {"name": "bad", "config": {"model_type": "nope"}}
        )
    ),
    "deleting a queued run": lambda c: (lambda run: lambda: c.api.delete(f"/api/training-runs/{run}/"))(
        queued_run(c)["id"]
    ),
    "a plain member deleting the project": lambda c: (
        lambda: api_client_for(get_user_model().objects.get(username="mark")).delete(f"/api/projects/{c.project.id}/")
    ),
    "adding an unknown user": lambda c: (
        lambda: c.api.post(f"/api/projects/{c.project.id}/members/", {"username": "zed"})
    ),
    "undeploying what is not deployed": lambda c: (
        lambda model: lambda: c.api.post(f"/api/registered-models/{model}/undeploy/")
    )(registered_version(c).registered_model_id),
}


@pytest.mark.parametrize("name", REFUSED)
def test_a_refused_action_records_nothing(ctx, name):
    act = REFUSED[name](ctx)
    since = last_id()
    response = act()
    assert 400 <= response.status_code < 500, response.content
    assert new_events(since) == []


# --------------------------------------------------------------------------- secrets


def test_a_database_password_in_a_source_is_never_recorded(dataset, olivia):
    request = RequestFactory().patch("/api/datasets/1/", REMOTE_ADDR="192.0.2.7")
    request.user = olivia
    source = {
        "kind": "sql",
        "engine": "postgres",
        "query": "SELECT * FROM orders",
        "database": "postgresql://shop:hunter2-p@ss@db.internal:5432/shop?sslmode=require",
    }
    event = audit.record(
        request,
        audit.Action.UPDATE,
        Dataset.objects.get(pk=dataset["id"]),
        changes={
            "source": source,
            "dsn": "host=db user=shop password='hunter2-p@ss'",
            "password": "hunter2-p@ss",
            "webhook_secret": "whsec-hunter2",
        },
    )
    stored = json.dumps(AuditEvent.objects.get(pk=event.pk).changes)
    assert "hunter2" not in stored
    assert "postgresql://shop:" in stored and "@db.internal:5432/shop" in stored  # the rest stays readable


def test_an_issued_token_is_never_recorded(olivia):
    raw = session_client("olivia").post("/api/tokens/", {"name": "laptop"}).json()["token"]
    event = AuditEvent.objects.get(action="token.issue")
    recorded = json.dumps([event.changes, event.object_label, event.actor_label, event.token_name])
    assert raw not in recorded and raw[10:] not in recorded
    assert event.changes == {"name": "laptop"}


def test_a_token_pasted_into_a_description_is_masked(api, dataset):
    _, raw = ApiToken.objects.issue(get_user_model().objects.get(username="olivia"), "leaked")
    api.patch(f"/api/datasets/{dataset['id']}/", {"description": f"use {raw} to read it"})
    assert raw not in json.dumps(AuditEvent.objects.get(action="update").changes)


# --------------------------------------------------------------------------- from where


def test_a_forged_forwarded_for_header_is_ignored(api, project):
    api.patch(f"/api/projects/{project.id}/", {"description": "x"}, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert AuditEvent.objects.get(action="update").address == "127.0.0.1"


def test_a_trusted_proxys_forwarded_for_names_the_client(api, project, settings):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/8")]
    api.patch(
        f"/api/projects/{project.id}/",
        {"description": "x"},
        REMOTE_ADDR="10.1.2.3",
        HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.4, 10.0.0.9",
    )
    # 6.6.6.6 is whatever the client wrote; 198.51.100.4 is what the outer proxy saw connect.
    assert AuditEvent.objects.get(action="update").address == "198.51.100.4"


# --------------------------------------------------------------------------- reading the trail


def test_an_outsider_gets_404_from_the_audit_endpoint(project, dataset, oscar, oscars_project):
    response = api_client_for(oscar).get(f"/api/projects/{project.id}/audit/")
    assert response.status_code == 404 and response.json() == {"error": "No such project"}


def test_a_member_reads_the_trail_newest_first_filtered_by_object(project, dataset, mark):
    member = api_client_for(mark)
    member.patch(f"/api/datasets/{dataset['id']}/", {"description": "by mark"})
    everything = member.get(f"/api/projects/{project.id}/audit/").json()
    assert [(e["action"], e["actor"]) for e in everything["results"]] == [("update", "mark"), ("create", "olivia")]
    one = member.get(
        f"/api/projects/{project.id}/audit/?object_type=datasets.dataset&object_id={dataset['id']}&page_size=1"
    ).json()
    assert one["count"] == 2 and len(one["results"]) == 1
    assert one["results"][0] | {"id": 0, "created_at": ""} == {
        "id": 0,
        "created_at": "",
        "actor": "mark",
        "via": "token",
        "token_name": "tests",
        "address": "127.0.0.1",
        "action": "update",
        "object_type": "datasets.dataset",
        "object_id": dataset["id"],
        "object_label": "purchases",
        "changes": {"description": "by mark"},
    }


def test_an_object_id_beyond_bigint_is_a_422_naming_the_field(api, project):
    response = api.get(f"/api/projects/{project.id}/audit/?object_id={2**63}")
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "object_id"


def test_the_trail_outlives_a_deleted_project(api, project, dataset):
    assert api.delete(f"/api/projects/{project.id}/").status_code == 204
    assert list(AuditEvent.objects.filter(project_id=project.id).values_list("action", "object_label")) == [
        ("delete", "b2b-recs"),
        ("create", "purchases"),
    ]


def test_the_history_shows_on_a_dataset_page_escaped(api, project, purchases_csv, purchases_mapping):
    name = '<script>alert("owned")</script>'
    made = api.post(
        f"/api/projects/{project.id}/datasets/",
        {"name": name, "source": {"kind": "file", "path": str(purchases_csv)}, "mapping": purchases_mapping},
    ).json()
    api.patch(f"/api/datasets/{made['id']}/", {"description": "<img src=x onerror=alert(1)>"})
    page = session_client("mark").get(f"/datasets/{made['id']}/").content.decode()
    history = page[page.index('id="history"') :]
    assert "2 events" in history
    assert history.count("&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;") == 2
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "olivia" in history and "127.0.0.1" in history and "token “tests”" in history


@pytest.mark.parametrize("page", ["project", "feature-config", "model-config"])
def test_the_history_shows_on_each_objects_page(api, project, feature_config, retrieval, page):
    # A project's history is its whole trail; any other object's is its own.
    path, label = {
        "project": (f"/projects/{project.id}/", "standard"),
        "feature-config": (f"/feature-configs/{feature_config['id']}/", "standard"),
        "model-config": (f"/model-configs/{retrieval['id']}/", "two-tower"),
    }[page]
    html = session_client("olivia").get(path).content.decode()
    history = html[html.index('id="history"') :]
    assert f"created {label}" in history


def test_a_page_shows_the_last_20_events_and_the_count(api, dataset):
    for number in range(24):
        api.patch(f"/api/datasets/{dataset['id']}/", {"description": f"edit {number}"})
    history = session_client("olivia").get(f"/datasets/{dataset['id']}/").content.decode()
    history = history[history.index('id="history"') :]
    assert "the last 20 of 25 events" in history
    assert history.count("<tr data-action=") == 20 and "edit 23" in history and "edit 3&quot;" not in history


def test_the_admin_shows_the_trail_read_only(api, project):
    api.patch(f"/api/projects/{project.id}/", {"description": "x"})
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD))
    event = AuditEvent.objects.get()
    assert admin.get("/admin/audit/auditevent/").status_code == 200
    assert admin.get(f"/admin/audit/auditevent/{event.pk}/change/").status_code == 200  # a read-only view
    assert admin.get("/admin/audit/auditevent/add/").status_code == 403
    assert admin.post(f"/admin/audit/auditevent/{event.pk}/change/", {"action": "delete"}).status_code == 403
    assert admin.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.get().action == "update"
