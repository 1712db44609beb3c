"""Waiting for a page's widgets: the ES modules behind ``data-component`` are imported on demand, after the
load event, so a click that comes before its widget is mounted goes nowhere."""

from __future__ import annotations


def wait_for_widgets(page) -> None:
    """After a navigation (a form post, a reload) and before acting: the module imports are requests, so once
    the network has been idle for a moment every widget has been mounted. Not for pages that poll."""
    page.wait_for_load_state("networkidle")
