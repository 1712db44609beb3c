"""A blessed scheduled run is pushed (and deployed) off the tick: settling marks it pending on its firing, the
worker takes it with a guarded claim, one model at a time, and acts in a child process; the deploy goes
through the background deploy jobs, whose outcome the tick records; nothing is lost if a worker dies."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from ml_platform.audit.models import AuditEvent
from ml_platform.core import clock
from ml_platform.deployment import jobs, targets
from ml_platform.deployment.models import Deployment, DeploymentAction
from ml_platform.schedules import actions, scheduler, services
from ml_platform.schedules.models import ActionState, FiringStatus, FiringTrigger, NotificationDelivery, ScheduleFiring
from ml_platform.training.models import TrainingRun
from ml_platform.training.worker import Worker
from tests.control.test_background_deploys import FakeTarget


@pytest.fixture(autouse=True)
def fake_serving(monkeypatch):
    """The serving endpoint: serves what it is told (the real one is test_deployment.py's story)."""
    FakeTarget.served, FakeTarget.broken, FakeTarget.deploys = {}, set(), []
    monkeypatch.setattr(targets, "available_targets", lambda: {"local": FakeTarget})
    return FakeTarget


def end_blessed(run: TrainingRun, folder: Path) -> None:
    """The run ends blessed with the files a push and a deploy need, as if a worker had executed it."""
    base = folder / f"run-{run.pk}"
    (base / "Pusher" / "output" / "serving_model").mkdir(parents=True)
    (base / "Pusher" / "output" / "serving_model" / "saved_model.pb").write_bytes(b"")
    (base / "ExampleGen" / "output").mkdir(parents=True)
    TrainingRun.objects.filter(pk=run.pk).update(
        artifacts={
            "Pusher": {"uri": str(base / "Pusher"), "type": "PushedModel", "producer": "Pusher"},
            "ExampleGen": {"uri": str(base / "ExampleGen"), "type": "Examples", "producer": "ExampleGen"},
        }
    )
    run.refresh_from_db()
    run.transition(TrainingRun.RUNNING)
    run.transition(TrainingRun.COMPLETED, blessed=True)


@pytest.fixture
def blessed_firing(time_travel, make_schedule, tmp_path):
    """``blessed_firing(on_blessed="push_and_deploy")``: a firing whose run ended blessed, settled by a tick."""

    def make(on_blessed="push_and_deploy"):
        schedule = make_schedule(on_blessed=on_blessed)
        time_travel.shift(timedelta(minutes=31))
        scheduler.tick()
        firing = schedule.firings.get()
        end_blessed(firing.run, tmp_path)
        scheduler.tick()
        firing.refresh_from_db()
        return firing

    return make


def another_pending(firing: ScheduleFiring) -> ScheduleFiring:
    """A second blessed firing of the same schedule (so of the same model), settled and pending."""
    now = clock.now()
    return ScheduleFiring.objects.create(
        schedule_id=firing.schedule_id,
        trigger=FiringTrigger.MANUAL,
        scheduled_for=now,
        fired_by="olivia",
        status=FiringStatus.SUCCEEDED,
        action_state=ActionState.PENDING,
        created_at=now,
        settled_at=now,
    )


def deployment_of(firing: ScheduleFiring) -> Deployment:
    return Deployment.objects.get(registered_model_id=firing.schedule.registered_model_id)


def test_the_tick_only_marks_a_blessed_run_pending(blessed_firing):
    firing = blessed_firing()
    assert (firing.status, firing.action_state, firing.blessed_action) == ("succeeded", "pending", "")
    assert firing.run.registry_version is None and not Deployment.objects.exists()


def test_a_schedule_that_does_nothing_when_blessed_leaves_nothing_pending(blessed_firing):
    assert blessed_firing(on_blessed="nothing").action_state == ActionState.NONE
    assert actions.claim_blessed_action() is None


def test_push_and_deploy_pushes_then_asks_for_a_background_deploy_without_waiting_for_it(blessed_firing):
    firing = blessed_firing()
    claimed = actions.claim_blessed_action()
    assert (claimed.pk, claimed.action_state, claimed.action_attempts) == (firing.pk, "acting", 1)
    acted = actions.act_on_blessed(claimed.pk)
    assert (acted.action_state, acted.blessed_action) == ("deploying", "pushed as version 1")
    deployment = deployment_of(firing)
    assert (deployment.pending_action, deployment.pending_version, deployment.state) == ("deploy", 1, "loading")
    assert FakeTarget.deploys == []  # the deploy jobs' carrier loads it, not this action


def test_the_tick_records_the_deploy_once_the_deploy_jobs_carried_it_out(blessed_firing):
    firing = blessed_firing()
    services.add_notification_target(firing.schedule, "email", "ops@example.com", ["deployed"])
    actions.act_on_blessed(actions.claim_blessed_action().pk)
    scheduler.tick()
    firing.refresh_from_db()
    assert firing.action_state == "deploying"  # still loading: nothing to record yet
    jobs.carry_out(deployment_of(firing).pk)
    scheduler.tick()
    firing.refresh_from_db()
    assert (firing.action_state, firing.blessed_action) == ("done", "pushed as version 1; deployed")
    assert NotificationDelivery.objects.get().subject == "recs version 1 is deployed"
    assert AuditEvent.objects.filter(action="deploy", actor_label="scheduler").count() == 1


def test_a_deploy_that_failed_to_load_is_recorded_on_the_firing(blessed_firing):
    firing = blessed_firing()
    FakeTarget.broken = {1}
    actions.act_on_blessed(actions.claim_blessed_action().pk)
    jobs.carry_out(deployment_of(firing).pk)
    scheduler.tick()
    firing.refresh_from_db()
    assert firing.action_state == "done"
    assert firing.blessed_action.startswith("pushed as version 1; deploy failed: ")
    assert "could not load version 1" in firing.blessed_action


def test_a_failed_scheduled_deploy_is_notified_as_a_failed_deploy(blessed_firing, mailoutbox):
    firing = blessed_firing()
    services.add_notification_target(firing.schedule, "email", "ops@example.com", ["deploy_failed"])
    services.add_notification_target(firing.schedule, "email", "runs@example.com", ["run_failed"])  # not a run
    FakeTarget.broken = {1}
    actions.act_on_blessed(actions.claim_blessed_action().pk)
    jobs.carry_out(deployment_of(firing).pk)
    scheduler.tick()
    delivery = NotificationDelivery.objects.get()
    assert (delivery.event, delivery.subject) == ("deploy_failed", "recs version 1 was not deployed")
    assert "could not load version 1" in delivery.payload["reason"]
    assert delivery.status == "delivered" and mailoutbox[0].to == ["ops@example.com"]


def test_a_scheduled_deploy_that_could_not_start_is_notified_as_a_failed_deploy(blessed_firing):
    firing = blessed_firing()
    services.add_notification_target(firing.schedule, "email", "ops@example.com", [])
    Deployment.objects.create(
        registered_model_id=firing.schedule.registered_model_id,
        pending_action=DeploymentAction.DEPLOY,
        pending_version=7,
        state="loading",
    )
    actions.act_on_blessed(actions.claim_blessed_action().pk)
    delivery = NotificationDelivery.objects.get()
    assert (delivery.event, delivery.payload["stage"]) == ("deploy_failed", "deploy")
    assert delivery.payload["reason"].startswith("deploy not started: a deploy to version 7 of recs")


def test_no_deploy_is_asked_while_another_request_of_the_model_is_pending(blessed_firing):
    firing = blessed_firing()
    Deployment.objects.create(
        registered_model_id=firing.schedule.registered_model_id,
        pending_action=DeploymentAction.DEPLOY,
        pending_version=7,
        state="loading",
    )
    acted = actions.act_on_blessed(actions.claim_blessed_action().pk)
    assert (acted.action_state, acted.blessed_action) == (
        "done",
        "pushed as version 1; deploy not started: a deploy to version 7 of recs was already pending",
    )
    assert deployment_of(firing).pending_version == 7


def test_an_action_is_claimed_once(blessed_firing):
    blessed_firing()
    assert actions.claim_blessed_action() is not None
    assert actions.claim_blessed_action() is None


def test_a_models_next_action_waits_until_the_one_in_hand_and_its_deploy_are_done(blessed_firing):
    firing = blessed_firing()
    second = another_pending(firing)
    assert actions.claim_blessed_action().pk == firing.pk
    assert actions.claim_blessed_action() is None  # the first is being pushed
    actions.act_on_blessed(firing.pk)
    assert actions.claim_blessed_action() is None  # ... and now deployed
    jobs.carry_out(deployment_of(firing).pk)
    scheduler.tick()
    assert actions.claim_blessed_action().pk == second.pk


def test_two_claimers_that_read_the_same_pending_actions_of_a_model_take_only_one(blessed_firing):
    """Both read two pending actions of one model as free at the same instant; the guard is in the UPDATE."""
    firing = blessed_firing()
    second = another_pending(firing)
    model_id = firing.schedule.registered_model_id
    assert actions._take(firing.pk, model_id, clock.now()) is True
    assert actions._take(second.pk, model_id, clock.now()) is False
    assert list(ScheduleFiring.objects.filter(action_state="acting").values_list("pk", flat=True)) == [firing.pk]


def test_an_action_lost_with_its_worker_is_taken_again_once_stale_without_pushing_twice(time_travel, blessed_firing):
    firing = blessed_firing()
    actions.claim_blessed_action()
    actions.act_on_blessed(firing.pk)  # as if it died after pushing and asking, before recording that it had:
    ScheduleFiring.objects.filter(pk=firing.pk).update(action_state=ActionState.ACTING, blessed_action="")
    assert actions.claim_blessed_action() is None  # still in hand: it may only be slow
    time_travel.shift(actions.action_stale_after() + timedelta(seconds=1))
    again = actions.claim_blessed_action()
    assert (again.pk, again.action_attempts) == (firing.pk, 2)
    acted = actions.act_on_blessed(again.pk)
    assert (acted.action_state, acted.blessed_action) == ("deploying", "pushed as version 1")
    assert TrainingRun.objects.filter(registry_version__isnull=False).count() == 1


def test_an_action_lost_too_often_is_given_up_saying_why(blessed_firing):
    firing = blessed_firing()
    for _ in range(actions.ACTION_MAX_ATTEMPTS):
        actions.claim_blessed_action()
        actions.release_blessed_action(firing.pk, "its process ended with code -9")
    firing.refresh_from_db()
    assert (firing.action_state, firing.blessed_action) == ("done", "gave up: its process ended with code -9")


class FakePopen:
    """Stands in for the action child: records its command; ``code`` None while it runs."""

    started: list[list[str]] = []

    def __init__(self, command, **_):
        FakePopen.started.append(command)
        self.code = None

    def poll(self):
        return self.code

    @property
    def returncode(self):
        return self.code


@pytest.fixture
def fake_children(monkeypatch):
    FakePopen.started = []
    monkeypatch.setattr("ml_platform.training.worker.subprocess.Popen", FakePopen)
    return FakePopen.started


def test_the_worker_acts_in_a_child_one_at_a_time(blessed_firing, fake_children):
    firing = blessed_firing()
    worker = Worker(max_concurrent=1)
    worker.act_on_blessed()
    (command,) = fake_children
    assert command[-2:] == ["act_on_blessed", str(firing.pk)]
    ScheduleFiring.objects.filter(pk=firing.pk).update(action_state=ActionState.PENDING)  # one more to do
    assert worker.act_on_blessed() == 0 and len(fake_children) == 1  # the first child still runs


def test_a_child_that_died_leaves_its_action_pending_for_the_next_step(blessed_firing, fake_children):
    firing = blessed_firing()
    worker = Worker(max_concurrent=1)
    worker.act_on_blessed()
    worker.action[1].code = -9
    worker.act_on_blessed()
    firing.refresh_from_db()
    assert (firing.action_state, firing.action_attempts, len(fake_children)) == ("acting", 2, 2)


def test_the_tick_runs_while_an_action_is_in_hand(time_travel, blessed_firing, fake_children):
    firing = blessed_firing()
    worker = Worker(max_concurrent=1)
    worker.act_on_blessed()
    time_travel.shift(timedelta(days=1))
    worker.fire_schedules()
    assert firing.schedule.firings.count() == 2


def test_the_history_shows_a_push_still_to_be_done(blessed_firing, api):
    firing = blessed_firing()
    (shown,) = api.get(f"/api/schedules/{firing.schedule_id}/history/").json()["firings"]
    assert (shown["action_state"], shown["blessed_action"]) == ("pending", "")


def test_the_history_and_the_page_show_a_deploy_being_carried_out(blessed_firing, api, olivia):
    firing = blessed_firing()
    actions.act_on_blessed(actions.claim_blessed_action().pk)
    (shown,) = api.get(f"/api/schedules/{firing.schedule_id}/history/").json()["firings"]
    assert (shown["action_state"], shown["blessed_action"]) == ("deploying", "pushed as version 1")
    browser = Client()
    browser.force_login(olivia)
    assert "pushed as version 1; deploying" in browser.get(f"/schedules/{firing.schedule_id}/").content.decode()


CLAIM = "from ml_platform.schedules import actions; f = actions.claim_blessed_action(); print(f.pk if f else '-')"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_worker_processes_claiming_at_once_take_one_action_of_a_model(blessed_firing):
    """Runs on SQLite and, in ``make test-postgres``, on PostgreSQL (where the model's row lock decides)."""
    firing = blessed_firing()
    second = another_pending(firing)
    command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "shell", "-c", CLAIM]
    claimers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    said = sorted(claimer.communicate(timeout=120)[0].strip().splitlines()[-1] for claimer in claimers)
    assert all(claimer.returncode == 0 for claimer in claimers)
    assert said in (sorted([str(firing.pk), "-"]), sorted([str(second.pk), "-"]))
    assert ScheduleFiring.objects.filter(action_state="acting").count() == 1
