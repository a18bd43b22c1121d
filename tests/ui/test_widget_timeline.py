"""The widget's timeline: read from the store (plot_timeline's rows) only while the view
shows it, and kept fresh as the run moves; built from the snapshot for a snapshot widget."""

from __future__ import annotations

import pytest
from _scale_runs import fan_out
from _ui_snapshots import at

from evkit import workflow
from evkit.notebook.display import run_widget
from evkit.notebook.timeline import timeline_bars
from evkit.notebook.widget import RunWidget

pytestmark = pytest.mark.slow  # real runs on a real store


@workflow.step
def prep(i: int) -> int:
    return i


@workflow.step
def report(*values: object) -> int:
    return len(values)


def test_live_timeline_is_read_only_while_shown_and_follows_the_run(runtime, until):
    waits = [workflow.wait_for_event(workflow.ManualListener, key=f"order-{i}") for i in range(3)]
    handle = report.step(*[prep.step(i) for i in range(3)], *waits).run_async(workflow_id="timeline")
    widget = run_widget(handle)
    until(lambda: widget.states.get("ManualListener_2") == "waiting", what="the waits")
    assert widget.timeline == {}  # nothing is read while the view does not show it

    widget._handle_custom_msg({"type": "timeline", "open": True}, [])
    until(lambda: widget.timeline.get("bars"), what="the first read")
    phases = {(step, phase) for step, phase, *_ in widget.timeline["bars"]}
    assert ("prep", "run") in phases
    assert ("ManualListener_1", "waiting") in phases

    workflow.send_events("timeline", [(f"order-{i}", i) for i in range(3)])
    assert handle.result(timeout=10) == 6
    until(
        lambda: (
            any(phase == "commit" for _, phase, *_ in widget.timeline["bars"])
            and any(step == "report" for step, *_ in widget.timeline["bars"])
        ),
        what="the final read",
    )
    bars, _ = timeline_bars("timeline")  # the same rows plot_timeline draws
    assert widget.timeline["bars"] == [[b.step_id, b.phase, round(b.start, 4), round(b.end, 4)] for b in bars]

    widget._handle_custom_msg({"type": "timeline", "open": False}, [])
    until(lambda: not widget.timeline_open, what="the close")


def test_snapshot_widget_draws_its_timeline_from_the_state_times():
    widget = RunWidget.from_snapshot(fan_out(6), now=at(4.0).timestamp(), layout_engine="layers")
    widget._handle_custom_msg({"type": "timeline", "open": True}, [])
    bars = widget.timeline["bars"]
    assert bars[0] == ["load", "run", 0.0, 0.4]
    assert ["ManualListener", "commit", pytest.approx(2.01), pytest.approx(2.02)] in bars
    waiting = [b for b in bars if b[0] == "ManualListener_5"]
    assert waiting == [["ManualListener_5", "waiting", 1.0, 4.0]]  # still waiting: ends now


def test_a_grouped_dag_is_left_to_the_browser_no_dot_drawing_is_sent(runtime, until):
    # 30 waits of one listener group in the browser, which lays the groups out itself:
    # dot's per-step positions would be computed and sent for nothing.
    waits = [workflow.wait_for_event(workflow.ManualListener, key=f"k{i}") for i in range(30)]
    handle = report.step(*waits).run_async(workflow_id="grouped")
    widget = run_widget(handle)
    workflow.send_events("grouped", [(f"k{i}", i) for i in range(30)])
    assert handle.result(timeout=10) == 30
    until(lambda: widget.status == "SUCCESSFUL", what="the final push")
    assert widget.dag_layout is None
    assert all("x" not in n for n in widget.nodes)
