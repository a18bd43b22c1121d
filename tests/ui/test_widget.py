"""The widget's Python side, built from hand-made RunSnapshots: no kernel, no engine."""

from __future__ import annotations

import json

import pytest
from _ui_snapshots import approval_run, at, chain, fan_in

from evkit.model import RunProgress, RunSnapshot, StepSnapshot, WorkflowStatus
from evkit.notebook.layout import compute_layout
from evkit.notebook.widget import EVENT_PAGE_ROWS, RunWidget, parse_payload

NOW = at(4.0).timestamp()


def test_widget_colours_each_step_by_its_state_and_draws_every_edge():
    widget = RunWidget.from_snapshot(approval_run(), now=NOW, layout_engine="layers")

    assert widget.states == {"load": "done", "timer": "waiting", "approve": "waiting", "publish": "pending"}
    assert {n["id"] for n in widget.nodes} == {"load", "timer", "approve", "publish"}
    assert {n["id"]: n["kind"] for n in widget.nodes}["timer"] == "event"
    assert sorted(map(tuple, widget.edges)) == [
        ("approve", "publish"),
        ("load", "approve"),
        ("load", "timer"),
        ("timer", "publish"),
    ]
    assert (widget.workflow_id, widget.status, widget.version) == ("approval", "WAITING", 3)
    # "layers": the browser lays the DAG out, so no positions or size are sent
    assert all("x" not in n for n in widget.nodes)
    assert (widget.width, widget.height, widget.dag_layout) == (0.0, 0.0, None)


def test_a_python_layout_sends_positions_and_size_with_the_nodes():
    run = approval_run()
    layout = compute_layout([(s.step_id, s.upstream) for s in run.steps], engine="layers")

    widget = RunWidget.from_snapshot(run, now=NOW, layout=layout)

    assert {n["id"]: (n["x"], n["y"]) for n in widget.nodes} == dict(layout.positions)
    assert (widget.width, widget.height) == (layout.width, layout.height)
    assert widget.dag_layout is layout


def test_event_table_lists_listener_args_state_times_attempts_and_timer_time_left():
    widget = RunWidget.from_snapshot(approval_run(), now=NOW, layout_engine="layers")

    rows = {row["step"]: row for row in widget.events}
    assert list(rows) == ["timer", "approve"]  # function steps are not in the table
    timer, approve = rows["timer"], rows["approve"]
    assert (timer["listener"], timer["args"], timer["state"], timer["attempts"]) == (
        "TimerListener",
        "[1767268810.0]",
        "waiting",
        1,
    )
    assert timer["times"] == {"waiting": "+0.500 s"}
    assert timer["time_left"] == pytest.approx(6.0)
    assert timer["deadline_kind"] == "fires"
    assert timer["inbox_key"] is None
    assert approve["attempts"] == 2
    assert approve["inbox_key"] == "ok"
    assert approve["time_left"] is None


def test_send_form_is_offered_only_while_a_manual_event_waits():
    run = approval_run()
    received = RunSnapshot(
        workflow_id=run.workflow_id,
        status=WorkflowStatus.RUNNING,
        started_at=run.started_at,
        steps=tuple(
            StepSnapshot(
                step_id=s.step_id,
                name=s.name,
                kind=s.kind,
                state="checkpointed",
                upstream=s.upstream,
                listener=s.listener,
                inbox_key=s.inbox_key,
            )
            if s.step_id == "approve"
            else s
            for s in run.steps
        ),
    )
    widget = RunWidget.from_snapshot(run, now=NOW, layout_engine="layers")
    assert [r["inbox_key"] for r in widget.events if r["step"] == "approve"] == ["ok"]

    widget.apply_snapshot(received, now=NOW)

    assert [r["inbox_key"] for r in widget.events if r["step"] == "approve"] == [None]
    assert widget.states["approve"] == "checkpointed"


def test_update_sends_only_changed_traits_and_flags_new_dynamic_steps():
    widget = RunWidget.from_snapshot(chain(3), now=NOW, layout_engine="layers")
    changes: list[str] = []
    widget.observe(lambda change: changes.append(change["name"]), names=["states", "nodes", "events"])

    assert widget.apply_snapshot(chain(3), now=NOW) is False
    assert changes == []  # same states, no events: nothing re-sent

    assert widget.apply_snapshot(chain(3, state="done"), now=NOW) is False
    assert changes == ["states"]

    assert widget.apply_snapshot(chain(5), now=NOW) is True  # s3, s4 are new: drawn at once
    assert {n["id"] for n in widget.nodes} == {"s0", "s1", "s2", "s3", "s4"}
    assert ["s3", "s4"] in widget.edges


def test_new_steps_drop_a_python_layout_that_lacks_them():
    layout = compute_layout([(s.step_id, s.upstream) for s in chain(3).steps], engine="layers")
    widget = RunWidget.from_snapshot(chain(3), now=NOW, layout=layout)

    widget.apply_snapshot(chain(4), now=NOW)

    assert widget.dag_layout is None  # the browser draws all four until a new layout comes
    assert [n["id"] for n in widget.nodes] == ["s0", "s1", "s2", "s3"]
    assert all("x" not in n for n in widget.nodes)
    assert widget.width == 0


def test_event_table_shows_one_page_and_turns_pages_on_the_views_request():
    run = fan_in(120)
    widget = RunWidget.from_snapshot(run, now=NOW)
    first = [r["step"] for r in widget.events]
    assert first == [f"w{i}" for i in range(EVENT_PAGE_ROWS)]
    assert (widget.event_offset, widget.event_total) == (0, 120)
    assert len(widget.states) == 121  # every step is coloured, whatever the page

    widget._handle_custom_msg({"type": "page", "offset": 50}, [])
    assert [r["step"] for r in widget.events] == [f"w{i}" for i in range(50, 100)]

    widget._handle_custom_msg({"type": "page", "offset": 10_000}, [])  # past the end: the last page
    assert widget.event_offset == 100
    assert [r["step"] for r in widget.events] == [f"w{i}" for i in range(100, 120)]

    widget._handle_custom_msg({"type": "page", "offset": "2"}, [])  # malformed: ignored
    assert widget.event_offset == 100


def test_a_live_widget_hands_page_requests_over_instead_of_writing_traits():
    widget = RunWidget.from_snapshot(fan_in(120), now=NOW)
    asked: list[int] = []
    widget.on_page_request(asked.append)

    widget._handle_custom_msg({"type": "page", "offset": 50}, [])

    assert asked == [50]
    assert widget.event_offset == 0  # the owner of the widget turns the page


def test_progress_of_a_snapshot_clamps_its_page_onto_a_page_start():
    run = fan_in(120)
    assert RunProgress.of_snapshot(run, event_offset=73, event_limit=50).event_offset == 50
    assert RunProgress.of_snapshot(run, event_offset=-5, event_limit=50).event_offset == 0
    empty = RunProgress.of_snapshot(chain(2), event_offset=50, event_limit=50)
    assert (empty.event_offset, empty.event_total, empty.events) == (0, 0, ())


def test_big_traits_are_sent_as_they_are_without_ipywidgets_walk():
    widget = RunWidget.from_snapshot(fan_in(3), now=NOW)
    state = widget.get_state()
    for name in ("nodes", "edges", "states", "events"):
        assert state[name] is getattr(widget, name), name


def test_repr_is_constant_whatever_the_state():
    widget = RunWidget.from_snapshot(approval_run(), now=NOW, layout_engine="layers")
    before = repr(widget)
    widget.apply_snapshot(approval_run(status=WorkflowStatus.FAILED, version=9), now=NOW + 1)
    assert repr(widget) == before == "<evkit RunWidget 'approval'>"


def test_widget_state_is_plain_json_for_the_frontend():
    widget = RunWidget.from_snapshot(approval_run(), now=NOW, layout_engine="layers")
    state = widget.get_state()
    for name in (
        "nodes",
        "edges",
        "states",
        "events",
        "event_offset",
        "event_total",
        "event_page_rows",
        "status",
        "now",
        "send_status",
        "_esm",
        "_css",
    ):
        assert name in state
    json.dumps(state)
    assert "evkit-send" in state["_esm"]
    assert "data-step" in state["_esm"]


def test_send_click_is_handed_over_with_step_and_payload_text():
    widget = RunWidget.from_snapshot(approval_run(), now=NOW, layout_engine="layers")
    requests: list[tuple[str, str]] = []
    widget.on_send_request(lambda step, payload: requests.append((step, payload)))

    widget._handle_custom_msg({"type": "send", "step": "approve", "payload": '{"ok": true}'}, [])
    widget._handle_custom_msg({"type": "send", "step": 3, "payload": "x"}, [])  # malformed: ignored
    widget._handle_custom_msg({"type": "other"}, [])

    assert requests == [("approve", '{"ok": true}')]


def test_send_status_is_shown_per_step_and_numbered():
    widget = RunWidget.from_snapshot(approval_run(), now=NOW, layout_engine="layers")
    widget.set_send_status("approve", ok=False, text="WorkflowNotFoundError: Run 'x' is not in store")
    widget.set_send_status("approve", ok=True, text="sent 1")
    assert widget.send_status == {"approve": {"ok": True, "text": "sent 1", "seq": 2}}


@pytest.mark.parametrize(
    ("text", "payload"),
    [('{"approved": true}', {"approved": True}), ("42", 42), ("yes please", "yes please"), ("  ", None)],
)
def test_payload_text_is_json_when_it_parses_else_the_text(text, payload):
    assert parse_payload(text) == payload


def test_push_reuses_the_rows_of_unchanged_event_steps_and_recomputes_running_timers():
    run = approval_run()
    widget = RunWidget.from_snapshot(run, now=NOW, layout_engine="layers")
    before = {r["step"]: r for r in widget.events}
    changes: list[str] = []
    widget.observe(lambda change: changes.append(change["name"]), names=["events"])

    widget.apply_snapshot(run, now=NOW + 1)  # the same step records, one second later

    after = {r["step"]: r for r in widget.events}
    moving = {step for step, row in before.items() if row["time_left"] is not None}
    assert moving, "approval_run() should have a running timer"
    for step in before:
        assert (after[step] is before[step]) is (step not in moving), step
    for step in moving:
        assert after[step]["time_left"] == pytest.approx(before[step]["time_left"] - 1)
    assert changes == ["events"]  # only because the timer's time left moved
