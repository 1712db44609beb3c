"""Real-browser fixtures: one headless Chromium per session, a fresh context per test.

Every page a test opens is watched: a JavaScript console error or an uncaught
page error (a module that fails to import, a static file that 404s, a script
that throws) fails the test at teardown. A test that *expects* an error, such
as a 404 page, says so with ``browser_errors.expect("...")``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, sync_playwright

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
    page = context.new_page()
    page.on("console", browser_errors.on_console)
    page.on("pageerror", browser_errors.on_page_error)
    yield page
    context.close()
    unexpected = browser_errors.unexpected()
    assert not unexpected, "JavaScript errors on the page:\n" + "\n".join(unexpected)


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
