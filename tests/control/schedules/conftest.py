"""Fixtures of the schedule tests: a queued run of the seven hand-written purchases to copy, and schedules
made from it at CURRENT_TIME (Friday 2025-03-14 09:30 UTC)."""

from __future__ import annotations

import ipaddress
import socket
from datetime import time

import pytest

from ml_platform.schedules import outbound, services
from ml_platform.schedules.services import ScheduleFields
from tests.helpers import queue_run


@pytest.fixture
def source_run(project, olivia, small_catalog):
    """A queued one-epoch run of model "recs": what the schedules copy."""
    return queue_run(project, olivia, small_catalog, epochs=1)


@pytest.fixture
def make_schedule(time_travel, source_run, olivia):
    """``make_schedule(schedule_type="hourly", schedule_time=time(0, 15))``: a schedule of "recs" copying
    ``source_run``; daily at 10:00 UTC unless told otherwise."""

    def make(**changes):
        fields = {"name": "recs retraining", "schedule_type": "daily", "schedule_time": time(10, 0), **changes}
        return services.create_from_run(source_run, olivia, ScheduleFields(**fields))

    return make


@pytest.fixture
def daily(make_schedule):
    """Daily at 10:00 UTC: first due half an hour after CURRENT_TIME."""
    return make_schedule()


@pytest.fixture
def dns(monkeypatch):
    """``dns["hooks.example.com"] = ["10.0.0.5"]``: what host names resolve to (the tests run offline).
    hooks.example.com is public until a test says otherwise; a literal address is itself; others do not resolve."""
    answers = {"hooks.example.com": ["93.184.216.34"]}

    def resolve(host, port):
        if host in answers:
            return [ipaddress.ip_address(a) for a in answers[host]]
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            raise socket.gaierror(f"{host}: no such host") from None

    monkeypatch.setattr(outbound, "resolve", resolve)
    return answers
