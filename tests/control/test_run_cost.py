"""A run's cost: its GPUs' price per hour (GPU_PRICES_PER_HOUR) for the hours it has run, counted while it
runs and stored once, when it ends, whichever way it ends."""

from datetime import timedelta
from decimal import Decimal

import pytest

from ml_platform.core import clock
from ml_platform.training.models import RunStatus
from tests.helpers import queue_run

pytestmark = pytest.mark.django_db

TWO_T4 = {"gpu_type": "T4", "gpu_count": 2}  # $0.35 per GPU-hour: $0.70 an hour


@pytest.fixture
def gpu_run(time_travel, project, olivia, small_catalog):
    """A run on two T4s, started at CURRENT_TIME."""
    run = queue_run(project, olivia, small_catalog, gpu_config=TWO_T4)
    run.transition(RunStatus.RUNNING, worker_id="test-worker", heartbeat_at=clock.now(), attempts=1)
    return run


def test_a_running_run_costs_its_gpus_price_for_the_hours_so_far(time_travel, gpu_run):
    assert gpu_run.cost() == Decimal(0)
    time_travel.shift(timedelta(hours=3))
    assert gpu_run.cost() == Decimal("2.10")


@pytest.mark.parametrize("ending", [RunStatus.COMPLETED, RunStatus.NOT_BLESSED, RunStatus.FAILED, RunStatus.CANCELLED])
def test_the_cost_is_stored_when_the_run_ends(time_travel, gpu_run, ending):
    time_travel.shift(timedelta(hours=2))
    gpu_run.transition(ending)
    assert gpu_run.cost_usd == Decimal("1.40")
    time_travel.shift(timedelta(hours=5))
    assert gpu_run.cost() == Decimal("1.40")


def test_a_price_change_does_not_rewrite_an_ended_runs_cost(time_travel, gpu_run, settings):
    time_travel.shift(timedelta(hours=2))
    gpu_run.transition(RunStatus.COMPLETED)
    settings.GPU_PRICES_PER_HOUR = {**settings.GPU_PRICES_PER_HOUR, "T4": 1.00}
    assert gpu_run.cost() == Decimal("1.40")


def test_a_run_that_never_started_costs_nothing(time_travel, project, olivia, small_catalog):
    run = queue_run(project, olivia, small_catalog, gpu_config=TWO_T4)
    time_travel.shift(timedelta(hours=2))
    run.transition(RunStatus.CANCELLED)
    assert run.cost() == run.cost_usd == Decimal(0)


def test_a_cpu_run_costs_nothing(time_travel, project, olivia, small_catalog):
    run = queue_run(project, olivia, small_catalog)
    run.transition(RunStatus.RUNNING, worker_id="test-worker", heartbeat_at=clock.now(), attempts=1)
    time_travel.shift(timedelta(hours=2))
    assert run.cost() == Decimal(0)


def test_the_api_answers_the_cost_so_far(time_travel, api, project, gpu_run):
    time_travel.shift(timedelta(hours=3))
    detail = api.get(f"/api/training-runs/{gpu_run.pk}/").json()
    listed = api.get(f"/api/projects/{project.id}/training-runs/").json()["results"]
    assert detail["cost_usd"] == 2.1
    assert [item["cost_usd"] for item in listed] == [2.1]
