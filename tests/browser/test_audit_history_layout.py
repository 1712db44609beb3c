"""The audit history (audit/_history.html) reads on a desktop and on a phone: it fits its page, and the
changes of an event get the room they need instead of a narrow column of very tall rows."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

LONG = "A dataset of the retail sample's purchases, without cancellations, for the weekly model. " * 3

# The history's table against its scrolling box, and the changes cells against the table, in px.
LAYOUT = """() => {
    const box = document.querySelector("#history .scroll");
    const rows = [...document.querySelectorAll("#history tbody tr")];
    const changes = [...document.querySelectorAll("#history td.audit-changes")];
    return {
        overflow: box.scrollWidth - box.clientWidth,
        boxWidth: box.clientWidth,
        narrowestChanges: Math.min(...changes.map((cell) => cell.getBoundingClientRect().width)),
        tallestRow: Math.max(...rows.map((row) => row.getBoundingClientRect().height)),
        rows: rows.length,
    };
}"""


@pytest.fixture
def edited_dataset(api, dataset):
    """The purchases dataset edited a few times, once with a long description (its changes over 200 characters)."""
    url = f"/api/datasets/{dataset['id']}/"
    for description in (LONG, "weekly", LONG.upper()):
        assert api.patch(url, {"description": description}).status_code == 200
    assert api.patch(url, {"name": "purchases-without-cancellations-for-the-weekly-retrieval-model"}).status_code == 200
    return dataset


def test_the_history_reads_at_a_desktops_and_a_phones_width(logged_in_page, olivia, edited_dataset, screenshots):
    page = logged_in_page(olivia)
    page.goto(f"/datasets/{edited_dataset['id']}/")
    page.locator("#history").scroll_into_view_if_needed()
    screenshots("history")
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        layout = page.evaluate(LAYOUT)
        assert layout["rows"] == 5
        assert layout["overflow"] <= 1, f"the history is wider than its box at {width} px: {layout}"
        assert layout["narrowestChanges"] >= layout["boxWidth"] * 0.45, f"cramped changes at {width} px: {layout}"
