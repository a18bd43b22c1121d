"""The widget's JavaScript in headless Chromium with a fake model: the DOM hooks the
browser test and users rely on (classes, data-step, the Send button)."""

from __future__ import annotations

import shutil

import pytest
from _js_harness import rendered
from _ui_snapshots import approval_run, at, fan_in, grid

from evkit.notebook.layout import compute_layout
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


def test_browser_layout_is_the_python_layered_layout():
    # The static picture draws with layout.py's layers, the widget with its JS port:
    # the same DAG must land in the same places.
    widget = RunWidget.from_snapshot(approval_run(), now=at(4.0).timestamp(), layout_engine="layers")
    dags = [grid(), approval_run(), fan_in(7)]
    with rendered(widget) as page:
        for run in dags:
            ids = [s.step_id for s in run.steps]
            edges = [[u, s.step_id] for s in run.steps for u in s.upstream]
            js = page.evaluate(
                """([ids, edges]) => {
                    const r = window.evkitModule.layered(ids, edges);
                    return [Object.fromEntries(r.positions), r.width, r.height];
                }""",
                [ids, edges],
            )
            python = compute_layout([(s.step_id, s.upstream) for s in run.steps], engine="layers")
            assert {k: tuple(v) for k, v in js[0].items()} == dict(python.positions), run.workflow_id
            assert (js[1], js[2]) == (python.width, python.height)
        # and the drawn boxes sit there
        rect = page.locator('.evkit-node[data-step="approve"] rect')
        layout = compute_layout([(s.step_id, s.upstream) for s in approval_run().steps], engine="layers")
        x, y = layout.positions["approve"]
        assert (float(rect.get_attribute("x")), float(rect.get_attribute("y"))) == (x - 75, y - 15)
        assert page.get_attribute(".evkit-run", "data-layout") == "browser"


def test_view_counts_states_and_pages_through_a_big_event_table():
    widget = RunWidget.from_snapshot(fan_in(120), now=at(4.0).timestamp())
    with rendered(widget) as page:
        assert page.locator(".evkit-count").all_inner_texts() == ["1 pending", "120 waiting"]
        assert page.inner_text(".evkit-counts").startswith("121 steps:")
        assert page.locator("tr.evkit-event-row").count() == 50
        assert page.inner_text(".evkit-page-text") == "event steps 1-50 of 120"
        assert page.is_disabled(".evkit-page-prev")

        page.click(".evkit-page-next")
        assert page.evaluate("window.evkitModel.sent") == [{"type": "page", "offset": 50}]

        widget._handle_custom_msg({"type": "page", "offset": 100}, [])  # the kernel's answer
        page.evaluate(
            """([rows, offset]) => {
                const m = window.evkitModel;
                m.set("events", rows);
                m.set("event_offset", offset);
            }""",
            [widget.events, widget.event_offset],
        )
        assert page.locator("tr.evkit-event-row").count() == 20
        assert page.inner_text(".evkit-page-text") == "event steps 101-120 of 120"
        assert page.is_disabled(".evkit-page-next")
        assert not page.is_disabled(".evkit-page-prev")


def test_pager_is_hidden_when_every_event_fits_on_one_page():
    widget = RunWidget.from_snapshot(approval_run(), now=at(4.0).timestamp())
    with rendered(widget) as page:
        assert not page.is_visible(".evkit-pager")
