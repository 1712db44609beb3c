"""The server-rendered pages in a real headless Chromium: login, projects, datasets, configs.

Objects are made through the ORM/services or the token API (``api``) before a
page is visited; the page fixture fails any test whose pages log a JavaScript
error, so each visit also checks that the page's modules and vendor files load.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from ml_platform.projects.models import Membership, Project
from tests import helpers
from tests.helpers import PASSWORD

pytestmark = pytest.mark.browser

FEATURES = {
    "buyer_tower": {
        "features": [
            {"kind": "id", "column": "buyer_id", "embedding_dim": 16, "max_vocab_size": 100},
            {"kind": "categorical", "column": "segment", "embedding_dim": 4, "max_vocab_size": 10},
            {"kind": "timestamp", "column": "timestamp", "periods": ["day_of_week", "month_of_year"]},
        ],
        "crosses": [{"columns": ["buyer_id", "segment"], "hash_buckets": 50, "embedding_dim": 8}],
    },
    "product_tower": {
        "features": [
            {"kind": "id", "column": "product_id", "embedding_dim": 16, "max_vocab_size": 100},
            {"kind": "categorical", "column": "category", "embedding_dim": 8, "max_vocab_size": 10},
        ]
    },
    "target": {"column": "target", "transforms": [{"op": "log1p"}]},
}

RANKING = {
    "model_type": "ranking",
    "buyer_tower": [{"type": "dense", "units": 32}],
    "product_tower": [{"type": "dense", "units": 32}],
    "output_dim": 16,
    "rating_head": [{"type": "dense", "units": 8}, {"type": "batch_norm"}],
}


@pytest.fixture
def feature_config(api, project, dataset):
    return helpers.feature_config_via_api(api, project, "standard", FEATURES, dataset)


@pytest.fixture
def model_config(api, project, feature_config):
    return helpers.model_config(api, project, "ranker", RANKING, feature_config)


# The chart on the canvas ``selector`` (null until one is drawn): its labels and data. A predicate for
# wait_for_function, which needs an answer at once (a promise would count as one): the first call starts
# importing Chart.js, the module the page drew with, and the calls after it read the chart.
CHART_ON_CANVAS = """(selector) => {
    if (!window.testChartJs) {
        import("chart.js").then((module) => { window.testChartJs = module; });
        return null;
    }
    const chart = window.testChartJs.Chart.getChart(document.querySelector(selector));
    return chart ? { labels: chart.data.labels, data: chart.data.datasets.map((d) => d.data) } : null;
}"""


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# --- login and projects -----------------------------------------------------


def test_it_logs_in_through_the_form_and_lists_only_the_users_projects(page, project, oscars_project):
    response = page.goto("/")
    assert response.request.redirected_from is not None
    assert path_of(page.url) == "/login/?next=/"
    expect(page.locator("h1")).to_have_text("Log in")

    page.fill("input[name=username]", "olivia")
    page.fill("input[name=password]", "not-the-password")
    page.click("form button[type=submit]")
    expect(page.locator("p.flash.error")).to_have_text("Your username and password didn't match.")
    assert urlsplit(page.url).path == "/login/"

    page.fill("input[name=username]", "olivia")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("form button[type=submit]")
    assert path_of(page.url) == "/"
    expect(page.locator("h1")).to_have_text("Projects")
    expect(page.locator(".who")).to_have_text("olivia")
    assert page.locator(".project-card").evaluate_all("cards => cards.map(c => c.dataset.project)") == ["b2b-recs"]
    expect(page.locator(".project-card", has_text="b2b-recs")).to_have_attribute("href", f"/projects/{project.id}/")


def test_it_creates_a_project_through_the_new_project_form(logged_in_page, olivia):
    page = logged_in_page(olivia)
    token = page.locator("form#new-project input[name=csrfmiddlewaretoken]")
    assert len(token.get_attribute("value")) > 20

    page.fill("form#new-project input[name=name]", "churn-recs")
    page.fill("form#new-project input[name=description]", "who stops buying")
    with page.expect_navigation():
        page.click("form#new-project button[type=submit]")

    created = Project.objects.get(name="churn-recs")
    assert path_of(page.url) == f"/projects/{created.id}/"
    expect(page.locator("main h1")).to_have_text("churn-recs")
    expect(page.locator("main p.muted").first).to_have_text("who stops buying")
    assert Membership.objects.get(project=created).user == olivia
    assert Membership.objects.get(project=created).role == Membership.OWNER


def test_it_rejects_an_invalid_project_name_with_a_clear_error(logged_in_page, olivia, project):
    page = logged_in_page(olivia)
    name = page.locator("form#new-project input[name=name]")
    name.fill("Bad Name")

    # The browser's own check stops the form first ...
    page.click("form#new-project button[type=submit]")
    assert name.evaluate("input => input.validity.patternMismatch") is True
    expect(page.locator(".flash")).to_have_count(0)  # nothing was posted

    # ... and the server says why when that check is bypassed.
    page.locator("form#new-project").evaluate("form => { form.noValidate = true; }")
    with page.expect_navigation():
        page.click("form#new-project button[type=submit]")
    expect(page.locator(".flash.error")).to_have_text("name: use lowercase letters, digits and dashes")
    assert list(Project.objects.values_list("name", flat=True)) == ["b2b-recs"]


# --- project page -----------------------------------------------------------


def test_it_shows_datasets_feature_configs_and_model_configs_on_the_project_page(
    logged_in_page, olivia, project, dataset, feature_config, model_config
):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/")
    expect(page.locator("main h1")).to_have_text("b2b-recs")

    datasets = page.locator("#datasets tbody tr")
    expect(datasets).to_have_count(1)
    expect(datasets.locator("td")).to_have_text(["purchases", "file", dataset["summary"], "Edit · Duplicate"])
    assert dataset["summary"].startswith("6 rows | 3 users | 3 products")
    expect(datasets.locator("a").first).to_have_attribute("href", f"/datasets/{dataset['id']}/")

    features = page.locator("#feature-configs tbody tr")
    expect(features).to_have_count(1)
    breakdown = feature_config["breakdown"]
    assert (breakdown["buyer"]["total"], breakdown["product"]["total"]) == (16 + 4 + 4 + 8, 16 + 8)
    expect(features.locator("td")).to_have_text(
        [
            "standard",
            "purchases",
            f"{breakdown['buyer']['total']}D",
            f"{breakdown['product']['total']}D",
            "Edit · Duplicate",
        ]
    )

    models = page.locator("#model-configs tbody tr")
    expect(models).to_have_count(1)
    total = model_config["parameter_counts"]["total"]
    assert total > 1000  # so the thousands separator is exercised
    expect(models.locator("td")).to_have_text(["ranker", "Ranking", "standard", f"{total:,}", "Edit · Duplicate"])


# --- dataset page -----------------------------------------------------------


def test_it_shows_the_preview_and_refreshes_it_in_place(logged_in_page, olivia, dataset, purchases_csv, api):
    page = logged_in_page(olivia)
    page.goto(f"/datasets/{dataset['id']}/")
    preview = dataset["preview"]

    expect(page.locator("#preview-summary")).to_have_text(dataset["summary"])
    assert dataset["summary"].startswith("6 rows | 3 users | 3 products")
    for kpi in ("rows", "buyers", "products", "dropped_rows"):
        expect(page.locator(f"[data-kpi={kpi}]")).to_have_text(f"{preview[kpi]:,}")
    headers = page.locator("#preview-sample thead th").all_text_contents()
    assert [h.split(" (")[0] for h in headers] == [c["name"] for c in preview["columns"]]
    assert {"buyer_id", "product_id", "timestamp", "target", "segment", "category"} <= {
        c["name"] for c in preview["columns"]
    }
    expect(page.locator("#preview-sample tbody tr")).to_have_count(len(preview["sample"]))
    expect(page.locator("#preview-sample tbody")).to_contain_text("c1")

    with open(purchases_csv, "a") as handle:
        handle.write("8,c4,p4,2025-02-05 09:00:00,1,retail,tools\n")
    page.evaluate("window.__sameDocument = true")
    page.click("#refresh-preview")

    expect(page.locator("[data-kpi=rows]")).to_have_text("7")
    expect(page.locator("[data-kpi=buyers]")).to_have_text("4")
    expect(page.locator("#preview-summary")).to_have_text(
        api.get(f"/api/datasets/{dataset['id']}/preview/").json()["preview"]["summary"]
    )
    expect(page.locator("#preview-summary")).not_to_contain_text("Preview failed")
    expect(page.locator("#refresh-preview")).to_be_enabled()
    assert page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded


def test_it_answers_404_for_a_dataset_of_a_project_the_user_is_not_in(
    logged_in_page, browser_errors, oscar, oscars_project, dataset
):
    browser_errors.expect("404")
    page = logged_in_page(oscar)
    response = page.goto(f"/datasets/{dataset['id']}/")

    assert response.status == 404
    assert response.request.redirected_from is None
    assert path_of(page.url) == f"/datasets/{dataset['id']}/"
    body = page.locator("body").inner_text()
    assert "purchases" not in body and "rows" not in body


# --- feature config and model config pages ----------------------------------


def test_it_draws_one_tensor_bar_slice_per_feature_with_proportional_widths(logged_in_page, olivia, feature_config):
    page = logged_in_page(olivia)
    page.goto(f"/feature-configs/{feature_config['id']}/")

    for tower in ("buyer", "product"):
        expected = feature_config["breakdown"][tower]
        expect(page.locator(f'[data-total="{tower}"]')).to_have_text(f"{expected['total']}D")
        slices = page.locator(f'.tensor-bar[data-tower="{tower}"] .slice')
        expect(slices).to_have_count(len(expected["features"]))
        assert [s.get_attribute("title") for s in slices.all()] == [
            f"{f['name']} ({f['kind']}): {f['dim']}D" for f in expected["features"]
        ]
        bar = page.locator(f'.tensor-bar[data-tower="{tower}"]').bounding_box()
        assert bar["width"] > 500 and bar["height"] > 10
        left = bar["x"]
        for slice_, feature in zip(slices.all(), expected["features"]):
            box = slice_.bounding_box()
            assert box["x"] == pytest.approx(left, abs=1)
            assert box["width"] == pytest.approx(bar["width"] * feature["dim"] / expected["total"], abs=1)
            left += box["width"]
        assert left == pytest.approx(bar["x"] + bar["width"], abs=1)
        expect(page.locator(f'.legend[data-legend="{tower}"] li')).to_have_count(len(expected["features"]))

    assert [f["name"] for f in feature_config["breakdown"]["buyer"]["features"]][-1] == "buyer_id x segment"


def test_it_charts_parameters_per_tower_and_shows_the_api_total(logged_in_page, olivia, model_config):
    page = logged_in_page(olivia)
    page.goto(f"/model-configs/{model_config['id']}/")
    counts = model_config["parameter_counts"]

    # The chart the page drew, as Chart.js knows it: its module, through the page's import map, is the page's.
    chart = page.wait_for_function(CHART_ON_CANVAS, arg="#params-chart").json_value()
    assert chart["labels"] == ["buyer tower", "product tower", "rating head"]
    assert chart["data"] == [
        [counts["towers"]["buyer"]["embedding_params"], counts["towers"]["product"]["embedding_params"], 0],
        [
            counts["towers"]["buyer"]["dense_params"],
            counts["towers"]["product"]["dense_params"],
            counts["rating_head"]["total"],
        ],
    ]
    canvas = page.locator("#params-chart").bounding_box()
    assert canvas["width"] > 500 and canvas["height"] > 50

    expect(page.locator("#total-params")).to_have_text(f"{counts['total']:,}")
    expect(page.locator('[data-tower="rating_head"] h3 .num')).to_have_text(f"{counts['rating_head']['total']:,}")
