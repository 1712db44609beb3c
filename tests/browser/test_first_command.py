"""The README's first command, run as a newcomer would: the platform comes up with the demo project.

It shares the session's browser (tests/browser/conftest.py): Playwright's sync API allows one per process.
"""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def platform(tmp_path):
    """`make up` in a fresh data folder; yields (url, username, password); stops it afterwards."""
    port = free_port()
    env = {**os.environ, "ML_PLATFORM_DATA_DIR": str(tmp_path / "data"), "PORT": str(port), "DEMO_ROWS": "20000"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        process = subprocess.Popen(["make", "up"], cwd=settings.BASE_DIR, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
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
    try:
        page = context.new_page()
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
        # Static vendor files come from npm, served by the platform itself.
        assert page.request.get(url + "static/vendor/chart.js/chart.umd.min.js").ok
        assert page.request.get(url + "static/vendor/d3/d3.min.js").ok
    finally:
        context.close()
    # The credentials printed are the generated ones, kept out of the repository.
    assert (tmp_path / "data" / "demo_password").read_text() == password
