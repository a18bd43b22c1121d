"""The details panel in headless Chromium with a fake model: a click on a node or a row
asks the kernel for the step's details and shows its answer; Tab reaches nodes and rows,
Enter or Space opens the panel, Escape closes it and gives the focus back."""

from __future__ import annotations

import shutil

import pytest
from _js_harness import rendered
from _ui_snapshots import approval_run, at

from evkit.notebook.widget import RunWidget

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium"),
]


def answer(page, widget: RunWidget, step_id: str) -> None:
    """What the kernel does with the view's request: build the details, sync the trait."""
    widget._handle_custom_msg({"type": "details", "step": step_id}, [])
    page.evaluate("([d]) => window.evkitModel.set('details', d)", [widget.details])


def sent(page) -> list[object]:
    return page.evaluate("window.evkitModel.sent")


def test_clicking_a_node_shows_its_details_and_escape_closes_them():
    widget = RunWidget.from_snapshot(approval_run(), now=at(4.0).timestamp(), layout_engine="layers")
    with rendered(widget, timezone_id="Asia/Tokyo") as page:
        assert not page.is_visible(".evkit-details")

        page.click('.evkit-node[data-step="load"]')

        assert sent(page) == [{"type": "details", "step": "load"}]
        assert page.inner_text(".evkit-details-title") == "load: loading…"
        answer(page, widget, "load")
        assert page.inner_text(".evkit-details-title") == "load (function step, done)"
        # Local times in the browser's zone (Tokyo is UTC+9), to the millisecond.
        times = page.locator(".evkit-details-times li").all_inner_texts()
        assert times == ["running 21:00:00.000", "done 21:00:00.500 (+0.500 s)"]
        assert page.inner_text(".evkit-details-attempts") == "1"
        assert page.get_attribute('.evkit-node[data-step="load"]', "data-selected") == "true"

        page.keyboard.press("Escape")

        assert not page.is_visible(".evkit-details")
        assert sent(page)[-1] == {"type": "details", "step": None}
        assert page.get_attribute('.evkit-node[data-step="load"]', "data-selected") is None
        assert page.evaluate("document.activeElement.dataset.step") == "load"  # focus given back


def test_nodes_and_rows_open_details_from_the_keyboard():
    widget = RunWidget.from_snapshot(approval_run(), now=at(4.0).timestamp(), layout_engine="layers")
    with rendered(widget) as page:
        page.focus("svg.evkit-dag")  # the toolbar comes before it in the Tab order
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.dataset.step") == "load"  # nodes in step order
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.dataset.step") == "timer"
        page.keyboard.press(" ")
        assert sent(page) == [{"type": "details", "step": "timer"}]

        page.focus('tr[data-step="approve"]')
        page.keyboard.press("Enter")

        assert sent(page)[-1] == {"type": "details", "step": "approve"}
        answer(page, widget, "approve")
        panel = page.inner_text(".evkit-details")
        assert "approve (event step, waiting)" in panel
        assert '{"args": [], "kwargs": {"key": "ok"}}' in page.inner_text(".evkit-details-arguments")
        assert page.inner_text(".evkit-details-listener") == "ManualListener"
        assert page.locator(".evkit-details-times li").all_inner_texts()[0].startswith("waiting ")
        assert page.get_attribute('tr[data-step="approve"]', "data-selected") == "true"

        page.keyboard.press("Escape")
        assert not page.is_visible(".evkit-details")
        assert page.evaluate("document.activeElement.dataset.step") == "approve"


def test_send_form_keeps_its_own_clicks_and_keys_and_the_table_still_works():
    widget = RunWidget.from_snapshot(approval_run(), now=at(4.0).timestamp(), layout_engine="layers")
    with rendered(widget) as page:
        page.fill('.evkit-payload[data-step="approve"]', "1")
        page.press('.evkit-payload[data-step="approve"]', "Enter")  # sends, opens nothing
        page.click('.evkit-payload[data-step="approve"]')
        assert [m["type"] for m in sent(page)] == ["send"]
        assert not page.is_visible(".evkit-details")

        page.click('tr[data-step="timer"] .evkit-col-listener')
        assert sent(page)[-1] == {"type": "details", "step": "timer"}
        answer(page, widget, "timer")
        assert page.inner_text(".evkit-details-title").endswith("timer (event step, waiting)")
        page.click(".evkit-details-close")
        assert not page.is_visible(".evkit-details")
        assert sent(page)[-1] == {"type": "details", "step": None}
