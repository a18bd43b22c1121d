"""The widget's JavaScript in headless Chromium with a fake model: the DOM hooks the
browser test and users rely on (classes, data-step, the Send button)."""

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


def test_view_colours_nodes_and_offers_send_for_the_waiting_manual_event():
    widget = RunWidget.from_snapshot(approval_run(), now=at(4.0).timestamp(), layout_engine="layers")
    with rendered(widget) as page:
        assert page.get_attribute('.evkit-node[data-step="timer"]', "data-state") == "waiting"
        assert "evkit-state-done" in page.get_attribute('.evkit-node[data-step="load"]', "class")
        assert page.locator("path.evkit-edge").count() == 4
        assert page.locator(".evkit-send").count() == 1  # only the manual event has a form
        assert page.get_attribute(".evkit-send", "data-step") == "approve"
        assert page.inner_text('tr[data-step="timer"] .evkit-col-time-left').startswith("fires in ")
        assert page.inner_text(".evkit-header") == "evkit run approval: WAITING"

        page.fill('.evkit-payload[data-step="approve"]', '{"ok": true}')
        page.click('.evkit-send[data-step="approve"]')

        assert page.evaluate("window.evkitModel.sent") == [
            {"type": "send", "step": "approve", "payload": '{"ok": true}'}
        ]
        assert page.is_disabled('.evkit-send[data-step="approve"]')
        assert page.inner_text('.evkit-send-status[data-step="approve"]') == "sending…"


def test_view_follows_trait_changes_and_keeps_typed_text():
    widget = RunWidget.from_snapshot(approval_run(), now=at(4.0).timestamp(), layout_engine="layers")
    with rendered(widget) as page:
        page.fill('.evkit-payload[data-step="approve"]', "half-typed")
        rows = widget.events
        page.evaluate(
            """([rows]) => {
                const m = window.evkitModel;
                m.set("states", {...m.get("states"), load: "failed"});
                m.set("events", rows);                       // a push while the user types
                m.set("send_status", {approve: {ok: false, text: "WorkflowNotFoundError: gone", seq: 1}});
            }""",
            [rows],
        )
        assert page.get_attribute('.evkit-node[data-step="load"]', "data-state") == "failed"
        assert page.input_value('.evkit-payload[data-step="approve"]') == "half-typed"
        status = page.locator('.evkit-send-status[data-step="approve"]')
        assert status.inner_text() == "WorkflowNotFoundError: gone"
        assert "evkit-send-error" in status.get_attribute("class")

        done = [dict(r, state="committed", inbox_key=None) if r["step"] == "approve" else r for r in rows]
        page.evaluate("([rows]) => window.evkitModel.set('events', rows)", [done])
        assert page.locator(".evkit-send").count() == 0  # the form goes once the event arrived
        assert page.get_attribute('tr[data-step="approve"]', "data-state") == "committed"
