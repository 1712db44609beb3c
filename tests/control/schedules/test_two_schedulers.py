"""Two schedulers in two processes against one due schedule: exactly one run (the guarded claim; on
PostgreSQL also FOR UPDATE SKIP LOCKED). Runs on SQLite and, in ``make test-postgres``, on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings

from ml_platform.core import clock
from ml_platform.schedules.models import ScheduleFiring, TrainingSchedule
from ml_platform.training.models import TrainingRun

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_two_ticking_processes_fire_a_due_occurrence_once(daily, source_run):
    TrainingSchedule.objects.filter(pk=daily.pk).update(next_run_at=clock.now() - timedelta(minutes=1))
    command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "fire_schedules"]
    tickers = [subprocess.Popen([*command, "--fired-by", f"ticker-{n}"], stdout=subprocess.PIPE) for n in (1, 2)]
    for ticker in tickers:
        ticker.communicate(timeout=120)
        assert ticker.returncode == 0
    (firing,) = ScheduleFiring.objects.filter(schedule=daily)
    assert firing.fired_by in ("ticker-1", "ticker-2") and firing.run is not None
    assert TrainingRun.objects.filter(registered_model=source_run.registered_model).count() == 2  # source + one
