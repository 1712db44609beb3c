"""The API docs page under the Content-Security-Policy: Swagger UI runs from the platform's own static files."""

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_the_api_docs_render_with_nothing_blocked(logged_in_page, olivia):
    """A script or style the CSP refused would show as a console error, which fails the test at teardown."""
    page = logged_in_page(olivia)
    page.goto("/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("ML Platform API")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
