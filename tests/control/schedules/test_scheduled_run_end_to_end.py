"""One scheduled run for real: fired, executed by the worker through its eight stages, blessed, and pushed to
the registry by its schedule's "when blessed" setting (in the worker's action child, off the tick)."""

from __future__ import annotations

from datetime import time

import pytest

from ml_platform.schedules import scheduler, services
from ml_platform.schedules.services import ScheduleFields
from ml_platform.training import services as training_services
from ml_platform.training.models import TrainingRun
from ml_platform.training.worker import Worker
from tests.helpers import drive, queue_run, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_blessed_scheduled_run_becomes_the_models_next_version(project, olivia, catalog):
    # No popularity rule: two epochs on 6,000 rows need not beat it, and the blessing is not this test's subject.
    template = queue_run(project, olivia, catalog, evaluator_config={"naive_baseline_margin": None})
    training_services.request_cancel(template)  # a template only: the worker need not train it
    schedule = services.create_from_run(
        template,
        olivia,
        ScheduleFields(name="nightly", schedule_type="daily", schedule_time=time(3, 0), on_blessed="push"),
    )
    fired = scheduler.trigger_now(schedule, olivia).run
    worker = Worker(max_concurrent=1)
    try:
        run = drive(worker, fired, lambda r: r.is_terminal, timeout=300)
    finally:
        worker.shutdown()
    assert run.status == TrainingRun.COMPLETED and run.blessed, (run.error_stage, run.error_message)
    scheduler.settle()
    worker.act_on_blessed()  # the push, in the worker's action child
    firing = schedule.firings.get()
    wait_until(lambda: firing.refresh_from_db() or firing.action_state == "done", 60, interval=0.2)
    run.refresh_from_db()
    assert (firing.status, firing.blessed_action) == ("succeeded", "pushed as version 1")
    assert run.registry_version == 1
