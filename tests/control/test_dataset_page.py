"""The dataset page's preview card is one server-rendered fragment: inside the page, and alone as the answer
htmx swaps in after a refresh (POST /datasets/<id>/preview/) or a poll (GET)."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from ml_platform.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def browser_of(username: str, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(get_user_model().objects.get(username=username))
    return client


def preview_card(html: str) -> str:
    """The preview <section>, with the CSRF token left out (Django masks it differently on each render)."""
    card = re.search(r'<section class="card" id="preview">.*?</section>', html, re.S)[0]
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", card)


def test_the_page_and_a_poll_render_the_same_fragment(olivia, dataset):
    browser = browser_of("olivia")
    page = browser.get(f"/datasets/{dataset['id']}/").content.decode()
    fragment = browser.get(f"/datasets/{dataset['id']}/preview/", headers=HTMX)

    assert fragment.status_code == 200
    assert "<html" not in fragment.content.decode()
    assert preview_card(fragment.content.decode()) == preview_card(page)
    assert dataset["summary"] in preview_card(page)


def test_a_refresh_recomputes_the_preview_answers_the_fragment_and_is_audited(olivia, dataset, purchases_csv):
    with open(purchases_csv, "a") as handle:
        handle.write("8,c4,p4,2025-02-05 09:00:00,1,retail,tools\n")

    answer = browser_of("olivia").post(f"/datasets/{dataset['id']}/preview/", headers=HTMX)

    assert answer.status_code == 200
    html = answer.content.decode()
    assert re.search(r'<dd data-kpi="rows">7</dd>', html) and re.search(r'<dd data-kpi="buyers">4</dd>', html)
    assert "HX-Request" in answer["Vary"]
    assert AuditEvent.objects.filter(object_id=dataset["id"], action="refresh").count() == 1


def test_without_htmx_the_refresh_form_answers_the_page_again(olivia, dataset):
    """The form works without script: it posts, and the browser is sent back to the page."""
    browser = browser_of("olivia")
    answer = browser.post(f"/datasets/{dataset['id']}/preview/")
    assert answer.status_code == 302 and answer["Location"] == f"/datasets/{dataset['id']}/#preview"
    assert browser.get(f"/datasets/{dataset['id']}/preview/").status_code == 302


def test_a_refresh_needs_the_csrf_token(olivia, dataset):
    browser = browser_of("olivia", enforce_csrf_checks=True)
    assert browser.post(f"/datasets/{dataset['id']}/preview/", headers=HTMX).status_code == 403

    browser.get(f"/datasets/{dataset['id']}/")  # sets the cookie the page's script sends back as X-CSRFToken
    token = browser.cookies["csrftoken"].value
    answer = browser.post(f"/datasets/{dataset['id']}/preview/", headers={**HTMX, "X-CSRFToken": token})
    assert answer.status_code == 200


def test_an_outsider_gets_404_for_the_fragment(oscar, oscars_project, dataset):
    outsider = browser_of("oscar")
    assert outsider.get(f"/datasets/{dataset['id']}/preview/", headers=HTMX).status_code == 404
    assert outsider.post(f"/datasets/{dataset['id']}/preview/", headers=HTMX).status_code == 404
    assert not AuditEvent.objects.filter(object_id=dataset["id"], action="refresh").exists()


def test_the_source_mapping_and_filters_are_rendered_as_text(olivia, dataset):
    html = browser_of("olivia").get(f"/datasets/{dataset['id']}/").content.decode()
    mapping = re.search(r'<pre class="json" id="dataset-mapping">(.*?)</pre>', html, re.S)[1]
    assert "&quot;buyer_id&quot;: &quot;customer&quot;" in mapping


def test_a_refresh_that_cannot_read_the_source_shows_why_and_when(time_travel, olivia, dataset, purchases_csv):
    """The stored preview error is the card's summary, and "Previewed …" is the time of the refresh."""
    time_travel.shift(timedelta(hours=2))
    purchases_csv.write_bytes(bytes(range(256)) * 8)
    browser = browser_of("olivia")
    answer = browser.post(f"/datasets/{dataset['id']}/preview/", headers=HTMX).content.decode()
    page = browser.get(f"/datasets/{dataset['id']}/").content.decode()
    for html in (answer, page):
        card = preview_card(html)
        assert "this is not a CSV or Parquet file" in card
        assert "Previewed March 14, 2025, 11:30 a.m." in card  # CURRENT_TIME + 2 h
