"""A blessed scheduled run is pushed (and deployed) off the tick: settling marks it pending on its firing, the
worker takes it with a guarded claim and acts in a child process, and nothing is lost if that worker dies."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ml_platform.schedules import scheduler
from ml_platform.schedules.models import ActionState, ScheduleFiring
from ml_platform.training.models import TrainingRun
from ml_platform.training.worker import Worker


@pytest.fixture
def registry(monkeypatch):
    """push_to_registry and deploy as fakes that record what they were asked (a real push needs artifacts)."""
    done = []

    def push(run):
        TrainingRun.objects.filter(pk=run.pk).update(registry_version=1)
        done.append(("push", run.pk))
        run.refresh_from_db()
        return run

    def deploy(registered, version, user):
        done.append(("deploy", version))

    monkeypatch.setattr(scheduler.registry_services, "push_to_registry", push)
    monkeypatch.setattr(scheduler.deployment_services, "deploy", deploy)
    return done


@pytest.fixture
def blessed_firing(time_travel, make_schedule, registry):
    """``blessed_firing(on_blessed="push_and_deploy")``: a firing whose run ended blessed, settled by a tick."""

    def make(on_blessed="push_and_deploy"):
        schedule = make_schedule(on_blessed=on_blessed)
        time_travel.shift(timedelta(minutes=31))
        scheduler.tick()
        firing = schedule.firings.get()
        firing.run.transition(TrainingRun.RUNNING)
        firing.run.transition(TrainingRun.COMPLETED, blessed=True)
        scheduler.tick()
        firing.refresh_from_db()
        return firing

    return make


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


def test_the_tick_only_marks_a_blessed_run_pending(blessed_firing, registry):
    firing = blessed_firing()
    assert (firing.status, firing.action_state, firing.blessed_action) == ("succeeded", "pending", "")
    assert registry == []


def test_a_schedule_that_does_nothing_when_blessed_leaves_nothing_pending(blessed_firing):
    assert blessed_firing(on_blessed="nothing").action_state == ActionState.NONE
    assert scheduler.claim_blessed_action() is None


def test_a_claimed_action_pushes_and_deploys_and_says_so(blessed_firing, registry):
    firing = blessed_firing()
    claimed = scheduler.claim_blessed_action()
    assert (claimed.pk, claimed.action_state, claimed.action_attempts) == (firing.pk, "acting", 1)
    done = scheduler.act_on_blessed(claimed.pk)
    assert (done.action_state, done.blessed_action) == ("done", "pushed as version 1; deployed")
    assert registry == [("push", firing.run_id), ("deploy", 1)]


def test_an_action_is_claimed_once(blessed_firing):
    blessed_firing()
    assert scheduler.claim_blessed_action() is not None
    assert scheduler.claim_blessed_action() is None


def test_an_action_lost_with_its_worker_is_taken_again_once_stale_without_pushing_twice(
    time_travel, blessed_firing, registry
):
    firing = blessed_firing()
    scheduler.claim_blessed_action()
    scheduler.act_on_blessed(firing.pk)  # as if it died after pushing, before recording that it was done:
    ScheduleFiring.objects.filter(pk=firing.pk).update(action_state=ActionState.ACTING, blessed_action="")
    registry.clear()
    assert scheduler.claim_blessed_action() is None  # still in hand: it may only be slow
    time_travel.shift(scheduler.action_stale_after() + timedelta(seconds=1))
    again = scheduler.claim_blessed_action()
    assert (again.pk, again.action_attempts) == (firing.pk, 2)
    assert scheduler.act_on_blessed(again.pk).blessed_action == "pushed as version 1; deployed"
    assert registry == [("deploy", 1)]


def test_an_action_lost_too_often_is_given_up_saying_why(blessed_firing):
    firing = blessed_firing()
    for _ in range(scheduler.ACTION_MAX_ATTEMPTS):
        scheduler.claim_blessed_action()
        scheduler.release_blessed_action(firing.pk, "its process ended with code -9")
    firing.refresh_from_db()
    assert (firing.action_state, firing.blessed_action) == ("done", "gave up: its process ended with code -9")


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
