"""The statistics report page of a run (/training/runs/<id>/statistics/), through Django's test client.

Who may see it, what it says before StatisticsGen has run, and what it shows
for ONE real run executed by the worker (``finished``, shared by the module:
tests/control/conftest.py).
"""

from __future__ import annotations

import re

import pytest
from django.test import Client

from ml_platform.training.models import TrainingRun

pytestmark = pytest.mark.django_db


def report_url(run_id: int, split: str | None = None) -> str:
    return f"/training/runs/{run_id}/statistics/" + (f"?split={split}" if split else "")


def browser_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text_of(response) -> str:
    """The page's visible text, tags stripped and whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


# --------------------------------------------------------------------------- access


def test_an_anonymous_visitor_is_sent_to_the_login_page(pending_run):
    response = Client().get(report_url(pending_run["id"]))
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={report_url(pending_run['id'])}"


def test_someone_outside_the_project_gets_404_and_learns_nothing(pending_run, oscar, oscars_project):
    response = browser_of(oscar).get(report_url(pending_run["id"]))
    assert response.status_code == 404
    assert "recs" not in text_of(response) and "not available" not in text_of(response)


def test_an_unknown_run_answers_404(olivia):
    assert browser_of(olivia).get(report_url(999_999)).status_code == 404


# --------------------------------------------------------------------------- before there are statistics


def test_a_run_whose_statistics_are_not_computed_yet_answers_404_with_the_reason(pending_run, mark, project):
    response = browser_of(mark).get(report_url(pending_run["id"]))
    assert response.status_code == 404
    assert response.templates[0].name == "training/statistics_report.html"
    text = text_of(response)
    assert "Not available yet: No statistics for this run: StatisticsGen has not completed yet (pending)" in text
    assert "recs #1" in text and "Pending" in text  # the header, inside the site's layout
    assert f'href="/projects/{project.id}/"' in response.content.decode()
    assert 'id="numeric-features"' not in response.content.decode()


def test_an_experiment_has_the_same_page(pending_run, olivia):
    TrainingRun.objects.filter(pk=pending_run["id"]).update(kind=TrainingRun.EXPERIMENT)
    response = browser_of(olivia).get(report_url(pending_run["id"]))
    assert response.status_code == 404
    assert "Exp #1 recs" in text_of(response) and "Not available yet" in text_of(response)


# --------------------------------------------------------------------------- one real, finished run


def rows_of(html: str, table_id: str) -> list[str]:
    """The ``data-feature`` names of a table's rows, in order."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S).group(0)
    return re.findall(r'<tr data-feature="([^"]+)"', table)


def test_a_finished_run_shows_its_numeric_and_categorical_features_schema_and_anomalies(finished):
    response = browser_of(finished.owner).get(report_url(finished.run.pk))
    assert response.status_code == 200
    html, text = response.content.decode(), text_of(response)
    assert rows_of(html, "numeric-features") == ["target", "price"]
    assert rows_of(html, "categorical-features") == [
        "buyer_id",
        "product_id",
        "buyer_segment",
        "buyer_city",
        "product_category",
        "product_subcategory",
    ]
    assert rows_of(html, "timestamp-features") == ["timestamp"]
    assert {"buyer_id", "price", "timestamp"} <= set(rows_of(html, "schema-features"))
    assert html.count('<svg class="mini-hist"') == 3  # target, price, timestamp
    assert 'id="anomalies"' in html
    assert '<li class="anomaly severity-info" data-feature="price">' in html  # the run's planted anomaly
    assert "Total examples" in text and "Avg missing (train)" in text


def test_the_split_selector_shows_the_eval_split(finished):
    client = browser_of(finished.owner)
    train, eval_ = client.get(report_url(finished.run.pk)), client.get(report_url(finished.run.pk, "eval"))
    count = re.compile(r'id="split-examples">([\d,]+)<')
    assert count.search(train.content.decode()).group(1) != count.search(eval_.content.decode()).group(1)
    assert 'data-split="eval" aria-current="page"' in eval_.content.decode()


def test_an_unknown_split_falls_back_to_train(finished):
    response = browser_of(finished.owner).get(report_url(finished.run.pk, "nonsense"))
    assert response.status_code == 200
    assert 'data-split="train" aria-current="page"' in response.content.decode()
