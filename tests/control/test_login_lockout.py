"""Failed logins are limited per (username, address) with django-axes: past the limit that pair is refused,
even with the right password, for the cool-off time, and the login page says why."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client

from tests.helpers import PASSWORD

pytestmark = pytest.mark.django_db

ATTACKER = "203.0.113.7"


def log_in(username: str, password: str, address: str = ATTACKER, client: Client | None = None):
    return (client or Client()).post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def fail_past_the_limit(username: str, address: str = ATTACKER) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        assert log_in(username, "not-the-password", address).status_code in (200, 429)


def test_repeated_failed_logins_lock_the_account(olivia):
    assert settings.AXES_FAILURE_LIMIT == 5  # the default: six wrong passwords below
    fail_past_the_limit("olivia")
    client = Client()
    refused = log_in("olivia", PASSWORD, client=client)
    assert refused.status_code == 429
    page = refused.content.decode()
    assert "Too many failed logins for this account from your address" in page
    assert "refused for 15 minutes" in page and '<form method="post">' in page
    assert "_auth_user_id" not in client.session


def test_a_lockout_leaves_other_users_and_other_addresses_alone(olivia, mark):
    fail_past_the_limit("olivia")
    assert log_in("mark", PASSWORD).status_code == 302
    assert log_in("olivia", PASSWORD, address="198.51.100.20").status_code == 302
    assert log_in("olivia", PASSWORD).status_code == 429


def test_a_successful_login_forgets_the_failures_before_it(olivia):
    for _ in range(2):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            assert log_in("olivia", "not-the-password").status_code == 200
        assert log_in("olivia", PASSWORD).status_code == 302


def test_the_lockout_lasts_the_cool_off(time_travel, olivia):
    fail_past_the_limit("olivia")
    time_travel.shift(settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert log_in("olivia", PASSWORD).status_code == 429


def test_the_lockout_ends_after_the_cool_off(time_travel, olivia):
    fail_past_the_limit("olivia")
    time_travel.shift(settings.AXES_COOLOFF_TIME + timedelta(seconds=1))
    assert log_in("olivia", PASSWORD).status_code == 302


def test_a_try_during_the_lockout_restarts_it(time_travel, olivia):
    fail_past_the_limit("olivia")
    time_travel.shift(settings.AXES_COOLOFF_TIME - timedelta(minutes=1))
    assert log_in("olivia", PASSWORD).status_code == 429
    time_travel.shift(timedelta(minutes=2))  # past the first cool-off, inside the one the try began
    assert log_in("olivia", PASSWORD).status_code == 429
