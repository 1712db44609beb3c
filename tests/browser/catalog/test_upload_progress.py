"""The upload's progress bar: shown while the file is sent, advancing with it, hidden once the answer came.

The upload is slowed down by Chromium's own network throttling (DevTools protocol), so that the browser
reports its progress several times: on the loopback a 400 KB file is sent at once.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.catalog.pages import LIVE_MS
from tests.helpers import RETAIL_CSV, needs_retail

pytestmark = [pytest.mark.browser, needs_retail]

UPLOAD_BYTES_PER_S = 100_000  # the 420 KB retail file takes about four seconds

# The bar's value while it is shown and short of the end (null otherwise), and whether it advanced past ``seen``.
SENDING = """() => {
    const bar = document.getElementById("upload-progress");
    return bar && !bar.hidden && bar.value > 0 && bar.value < 100 ? bar.value : null;
}"""
ADVANCED = """(seen) => {
    const bar = document.getElementById("upload-progress");
    return bar && !bar.hidden && bar.value > seen;
}"""


def throttle_uploads(page, bytes_per_s: int) -> None:
    devtools = page.context.new_cdp_session(page)
    devtools.send("Network.enable")
    devtools.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_s},
    )


def test_the_progress_bar_advances_while_the_file_is_sent_and_hides_after(logged_in_page, olivia, project):
    page = logged_in_page(olivia)
    page.goto(f"/projects/{project.id}/datasets/new/")
    bar = page.locator("#upload-progress")
    expect(bar).to_be_hidden()
    throttle_uploads(page, UPLOAD_BYTES_PER_S)

    page.set_input_files("#upload-file", str(RETAIL_CSV))
    first = page.wait_for_function(SENDING, timeout=LIVE_MS).json_value()
    page.wait_for_function(ADVANCED, arg=first, timeout=LIVE_MS)

    expect(page.locator("#upload-choice option:checked")).to_contain_text(RETAIL_CSV.name, timeout=LIVE_MS)
    expect(bar).to_be_hidden()
