"""The view modal's Overview says which data a scheduled run trained on: its relative window ("the last 7
days") ends at the occurrence it was fired for, named with the schedule that fired it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ml_platform.datasets.models import Dataset
from ml_platform.schedules import scheduler
from ml_platform.schedules.models import ScheduleFiring


@pytest.fixture
def fired_run(time_travel, daily):
    """The daily schedule's run of Friday 2025-03-14 10:00 UTC, over the last 7 days of its dataset."""
    Dataset.objects.filter(pk=daily.dataset_id).update(filters={"last_days": 7})
    time_travel.shift(timedelta(minutes=31))
    scheduler.tick()
    return ScheduleFiring.objects.get(schedule=daily, run__isnull=False).run


def overview(pages, run) -> str:
    response = pages.get(f"/training/runs/{run.pk}/view/overview/")
    assert response.status_code == 200
    return response.content.decode()


def test_a_scheduled_runs_overview_shows_its_window_ending_at_the_occurrence(pages, fired_run, daily):
    page = overview(pages, fired_run)
    assert 'id="view-data-window"' in page
    assert "the last <b>7 days</b>" in page
    assert 'up to <time datetime="2025-03-14T10:00:00+00:00">2025-03-14 10:00 UTC</time>' in page
    assert f'<a href="/schedules/{daily.pk}/">recs retraining</a>' in page


def test_a_run_without_a_relative_window_shows_none(pages, source_run):
    assert 'id="view-data-window"' not in overview(pages, source_run)
