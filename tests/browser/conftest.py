"""Real-browser fixtures: one headless Chromium per session, a fresh context per test.

Every page a test opens is watched: a JavaScript console error or an uncaught
page error (a module that fails to import, a static file that 404s, a script
that throws) fails the test at teardown. A test that *expects* an error, such
as a 404 page, says so with ``browser_errors.expect("...")``.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.helpers import PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000
LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class BrowserErrors:
    """Console errors and page errors seen by one test's pages."""

    def __init__(self):
        self.seen: list[str] = []
        self.expected: list[str] = []

    def on_console(self, message):
        if message.type == "error":
            location = message.location.get("url", "") if message.location else ""
            if urlsplit(location).path == "/favicon.ico":
                return  # the browser asks for it by itself; no page of ours links one
            self.seen.append(f"console error: {message.text} ({location})")

    def on_page_error(self, error):
        self.seen.append(f"page error: {error}")

    def expect(self, fragment: str):
        """Allow errors containing ``fragment`` (e.g. the 404 a test provokes on purpose)."""
        self.expected.append(fragment)

    def unexpected(self) -> list[str]:
        return [e for e in self.seen if not any(fragment in e for fragment in self.expected)]


@pytest.fixture
def browser_errors() -> BrowserErrors:
    return BrowserErrors()


@pytest.fixture
def page(browser, live_server, browser_errors) -> Page:
    """A page in a fresh browser context (own cookies), with base_url set to the live server."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    # No request leaves loopback: anything else (a CDN, a font, a tracker) is refused and fails the test.
    left_loopback: list[str] = []

    def refuse(route):
        left_loopback.append(route.request.url)
        route.abort()

    context.route(lambda url: urlsplit(url).hostname not in LOOPBACK, refuse)
    page = context.new_page()
    page.on("console", browser_errors.on_console)
    page.on("pageerror", browser_errors.on_page_error)
    yield page
    context.close()
    unexpected = browser_errors.unexpected()
    assert not unexpected, "JavaScript errors on the page:\n" + "\n".join(unexpected)
    assert not left_loopback, "Requests off loopback:\n" + "\n".join(left_loopback)


def log_in(page: Page, username: str, password: str = PASSWORD) -> Page:
    """Log in through the real login form; on success the page ends on the projects page."""
    page.goto("/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("form button[type=submit]")
    return page


@pytest.fixture
def logged_in_page(page):
    """``logged_in_page(olivia)`` (a user or a username) logs in through the login form and returns the page."""

    def _log_in(user) -> Page:
        username = getattr(user, "username", user)
        log_in(page, username)
        assert urlsplit(page.url).path == "/", f"login as {username} did not land on the projects page: {page.url}"
        return page

    return _log_in


SCREENSHOT_WIDTHS = (1280, 390)
# Where screenshots go: $SCREENSHOT_DIR, else var/screenshots (ignored by git).
SCREENSHOT_DIR = Path(os.environ.get("SCREENSHOT_DIR") or Path(__file__).resolve().parents[2] / "var" / "screenshots")
PAGE_SCROLLS_SIDEWAYS = "() => document.documentElement.scrollWidth > document.documentElement.clientWidth + 1"


@pytest.fixture
def screenshots(page, request):
    """``screenshots("training")`` saves the page at 1280 and 390 px wide (full page) as
    ``<test>-training-<width>.png`` under SCREENSHOT_DIR, and fails when the page scrolls sideways at any of
    them (a wide table must scroll inside its own box). The viewport is put back as it was."""

    def shoot(name: str) -> list[Path]:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        before = page.viewport_size
        saved = []
        for width in SCREENSHOT_WIDTHS:
            page.set_viewport_size({"width": width, "height": before["height"]})
            path = SCREENSHOT_DIR / f"{request.node.name}-{name}-{width}.png"
            page.screenshot(path=path, full_page=True)
            saved.append(path)
            assert not page.evaluate(PAGE_SCROLLS_SIDEWAYS), f"{name} scrolls sideways at {width} px"
        page.set_viewport_size(before)
        return saved

    return shoot


BROWSER_RERUNS = 2


def pytest_collection_modifyitems(items):
    """A browser test that fails is run again, up to twice, before it counts as failed: on two shared cores a
    click can still land before its widget's module has loaded (the modules are imported after the load
    event). A real fault fails all three times; the rerun is reported in the summary (``R``)."""
    for item in items:
        if "tests/browser/" in str(item.path):
            item.add_marker(pytest.mark.flaky(reruns=BROWSER_RERUNS))
