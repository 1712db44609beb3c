"""The API docs page under the Content-Security-Policy: Swagger UI runs from the platform's own static files."""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_the_api_docs_render_with_nothing_blocked(logged_in_page, olivia):
    """A script or style the CSP refused would show as a console error, which fails the test at teardown."""
    page = logged_in_page(olivia)
    page.goto("/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("ML Platform API")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()


def test_the_api_docs_render_offline(logged_in_page, olivia):
    """Every request off this machine is refused, as on an offline network: the docs still list the operations."""
    page = logged_in_page(olivia)
    refused = []

    def only_loopback(route):
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost", "::1"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.goto("/api/docs")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    assert page.locator(".opblock-summary-path").count() > 50
    assert refused == []
