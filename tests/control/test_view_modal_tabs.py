"""The view modal's tab partials without a pages: a login is required, outsiders and unknown tabs get 404,
and a tab's answer carries the header out of band with the actions the rules allow (training/rules.py)."""

from __future__ import annotations

import pytest
from django.test import Client

from ml_platform.training import rules
from ml_platform.training.models import TrainingRun
from ml_platform.training.view import TABS
from tests.helpers import copies


def tab_url(run_id: int, tab: str) -> str:
    return f"/training/runs/{run_id}/view/{tab}/"


@pytest.mark.parametrize("tab", list(TABS))
def test_every_tab_needs_a_login_and_hides_from_outsiders(pages, oscar, pending_run, tab):
    assert Client().get(tab_url(pending_run["id"], tab)).status_code == 302  # to the login page
    outsider = Client()
    outsider.force_login(oscar)
    assert outsider.get(tab_url(pending_run["id"], tab)).status_code == 404
    answer = pages.get(tab_url(pending_run["id"], tab), HTTP_HX_REQUEST="true")
    assert answer.status_code == 200
    html = answer.content.decode()
    assert 'id="view-modal-header" hx-swap-oob="true"' in html and f'data-tab-body="{tab}"' in html


def test_an_unknown_tab_is_404(pages, pending_run):
    assert pages.get(tab_url(pending_run["id"], "secrets")).status_code == 404


@pytest.mark.parametrize(
    "status", [TrainingRun.PENDING, TrainingRun.RUNNING, TrainingRun.COMPLETED, TrainingRun.FAILED]
)
def test_the_header_offers_what_the_rules_allow(pages, pending_run, status):
    (run,) = copies(pending_run["id"], 1, status=status)
    html = pages.get(tab_url(run.pk, "overview")).content.decode()
    header = html[: html.index("</header>")]
    allowed = rules.allowed(rules.RunState.of(run))
    for action in ("cancel", "rerun", "edit", "push", "deploy", "delete"):
        assert (f'data-action="{action}"' in header) == (action in allowed), (status, action)
    assert f'data-terminal="{"true" if run.is_terminal else "false"}"' in header


def test_a_name_is_escaped_in_the_header(pages, pending_run):
    (run,) = copies(pending_run["id"], 1, name="<img src=x onerror=alert(1)>")
    html = pages.get(tab_url(run.pk, "overview")).content.decode()
    assert "<img src=x" not in html and "&lt;img src=x" in html
