"""The pages' skeleton in Chromium: widgets mounted from data-component, a native <dialog>, and polling that
backs off while the tab is hidden. Every page here also runs under the CSP with nothing refused (a refused
script, style or handler is a console error, which fails the test)."""

from __future__ import annotations

from datetime import datetime

import pytest
from playwright.sync_api import expect

from ml_platform.audit.models import AuditEvent

pytestmark = pytest.mark.browser


def test_a_dialog_opens_from_its_button_and_closes_by_escape_its_button_or_the_backdrop(
    logged_in_page, olivia, dataset
):
    created = AuditEvent.objects.get(object_id=dataset["id"], action="create")
    assert len(created.changes_text) > 200  # shown truncated in the history, in full in the dialog
    page = logged_in_page(olivia)
    page.goto(f"/datasets/{dataset['id']}/")
    dialog = page.locator(f"dialog#event-{created.pk}-changes")
    opener = page.locator(f'[data-dialog="event-{created.pk}-changes"]')
    expect(dialog).to_be_hidden()

    opener.click()
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text("Changes")
    assert dialog.locator("pre").text_content() == created.changes_text
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    opener.click()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    opener.click()
    page.mouse.click(5, 5)  # the backdrop, outside the dialog's box
    expect(dialog).to_be_hidden()


# Starts the polling helper on a clock the test moves, with the page's visibility under the test's control.
START_POLLING = """async () => {
    const { every } = await import("/static/ml_platform/js/components/poll.js");
    let hidden = false;
    Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
    window.testPolls = 0;
    window.testSetHidden = (value) => {
        hidden = value;
        document.dispatchEvent(new Event("visibilitychange"));
    };
    window.testStopPolling = every(1, () => { window.testPolls += 1; });
}"""


def test_polling_slows_down_while_the_tab_is_hidden_and_catches_up_when_it_shows(logged_in_page, olivia, dataset):
    page = logged_in_page(olivia)
    page.clock.install(time=datetime(2025, 3, 14, 9, 30))
    page.goto(f"/datasets/{dataset['id']}/")
    page.clock.pause_at(datetime(2025, 3, 15))
    polls = lambda: page.evaluate("window.testPolls")  # noqa: E731

    page.evaluate(START_POLLING)
    page.clock.run_for(3_000)
    assert polls() == 3  # every second while visible

    page.evaluate("testSetHidden(true)")
    page.clock.run_for(9_999)
    assert polls() == 3  # hidden: nobody reads it ...
    page.clock.run_for(1)
    assert polls() == 4  # ... but it still polls, ten times less often

    page.evaluate("testSetHidden(false)")
    assert polls() == 5  # at once when the tab shows again
    page.clock.run_for(1_000)
    assert polls() == 6

    page.evaluate("testStopPolling()")
    page.clock.run_for(10_000)
    assert polls() == 6
