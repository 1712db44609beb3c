"""The README's first command, run as a newcomer would: the platform comes up with the demo project.

It shares the session's browser (tests/browser/conftest.py): Playwright's sync API allows one per process.
"""

import json
import os
import re
import signal
import subprocess
import time

import pytest
from django.conf import settings
from playwright.sync_api import expect

from tests.helpers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.browser]

HASHED = re.compile(r"\.[0-9a-f]{12}\.m?js$")


@pytest.fixture
def platform(tmp_path):
    """`make up` in a fresh data folder; yields (url, username, password); stops it afterwards."""
    port = free_port()
    env = {**os.environ, "ML_PLATFORM_DATA_DIR": str(tmp_path / "data"), "PORT": str(port), "DEMO_ROWS": "20000"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            ["make", "up"], cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 240
        banner = login = None
        while time.monotonic() < deadline and process.poll() is None:
            text = log.read_text()
            banner = re.search(r"ML Platform is running at (http://\S+)", text)
            login = re.search(r"Log in as '(\S+)' with password '(\S+)'", text)
            if banner and login:
                break
            time.sleep(0.5)
        assert banner and login, f"`make up` did not come up:\n{log.read_text()[-3000:]}"
        yield banner.group(1), login.group(1), login.group(2)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_make_up_serves_the_demo_project_after_login(platform, browser, tmp_path):
    url, username, password = platform
    assert url.startswith("http://127.0.0.1:")
    context = browser.new_context()
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on(
            "console",
            lambda message: (
                message.type == "error" and errors.append(f"{message.text} ({(message.location or {}).get('url', '')})")
            ),
        )
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(url)
        assert "/login/" in page.url
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_selector("[data-project='b2b-recs']")
        page.click("[data-project='b2b-recs']")
        page.wait_for_selector("#datasets")
        summary = page.inner_text("#datasets .summary")
        assert re.match(r"20K rows \| [\d.]+K? users \| [\d.]+K? products \| \d+ months", summary), summary
        model_types = page.locator("#model-configs .badge").all_inner_texts()
        assert sorted(model_types) == ["Hybrid (multitask)", "Ranking", "Retrieval"]
        # Static files have hashed names (collectstatic's manifest); the libraries come from npm, served by the
        # platform itself, as ES modules the import map names.
        imports = json.loads(page.locator("script[type=importmap]").text_content())["imports"]
        assert {"htmx.org", "chart.js", "d3-selection"} <= set(imports)
        assert all(HASHED.search(src) for src in [*imports.values(), page.get_attribute("script[type=module]", "src")])
        # The widgets mount from those files: the feature config's tensor bars and a model config's chart.
        page.click("#feature-configs a")
        expect(page.locator(".tensor-bar .slice").first).to_be_visible()
        page.go_back()
        page.click("#model-configs a")
        page.wait_for_function("""() => {  // at once, no promise: the first call starts importing Chart.js
            if (!window.testChartJs) import("chart.js").then((module) => { window.testChartJs = module; });
            return window.testChartJs?.Chart.getChart(document.querySelector("#params-chart")) !== undefined;
        }""")
    finally:
        context.close()
    assert [e for e in errors if not e.endswith("/favicon.ico)")] == []  # the browser asks for one by itself
    # The credentials printed are the generated ones, kept out of the repository.
    assert (tmp_path / "data" / "demo_password").read_text() == password
