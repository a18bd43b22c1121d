"""The widget's details panel of one step: what the kernel answers when the view selects a
step (its arguments, result preview, attempts with times, error and traceback; for an
event step its payload and waiting -> received -> checkpointed -> committed times), read
from a real store off the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest
import traitlets
from _ui_snapshots import T0, approval_run, at

from evkit import workflow
from evkit.notebook.display import run_widget
from evkit.notebook.widget import RunWidget
from evkit.store.details import PREVIEW_CHARS

BIG = "x" * 5000


@workflow.step
def source() -> int:
    return 41


@workflow.step
def big(n: int, *, label: str) -> str:
    return f"{label}:{n}:{BIG}"


_flaky_calls: list[int] = []


@workflow.step(max_retries=1, retry_exceptions=True, retry_backoff_seconds=0.0)
def flaky(n: int) -> int:
    _flaky_calls.append(n)
    if len(_flaky_calls) == 1:
        raise ConnectionError("the first try drops")
    return n + 1


@workflow.step(max_retries=0)
def broken(n: int) -> int:
    return divide(n)


def divide(n: int) -> int:
    return n // 0


@workflow.step
def echo(payload: object) -> object:
    return payload


def select(widget: RunWidget, step_id: str | None) -> None:
    """What the view sends when a node or row is clicked (or Enter pressed on it)."""
    widget._handle_custom_msg({"type": "details", "step": step_id}, [])


def stored(widget: RunWidget, step_id: str, state: str) -> bool:
    """True once the panel shows ``step_id`` in ``state`` with the store's part read."""
    d = widget.details
    return d.get("step") == step_id and d.get("state") == state and d.get("stored") and not d.get("loading")


@pytest.mark.slow
def test_function_step_details_show_arguments_a_cut_result_and_timed_attempts(runtime, until):
    _flaky_calls.clear()
    handle = big.step(flaky.step(source.step()), label="run").run_async(workflow_id="details-fn")
    widget = run_widget(handle)
    writers: set[str] = set()
    widget.observe(lambda _: writers.add(threading.current_thread().name), names=["details"])
    assert handle.result(timeout=10) == f"run:42:{BIG}"
    until(lambda: widget.status == "SUCCESSFUL", what="the final push")

    select(widget, "big")
    until(lambda: stored(widget, "big", "done"), what="the details of 'big'")
    d = widget.details
    assert d["kind"] == "function"
    assert d["args"] == '{"args": ["<result of \'flaky\'>"], "kwargs": {"label": "run"}}'
    assert d["result"] == '"run:42:' + BIG[: PREVIEW_CHARS - len('"run:42:')] + "…"
    assert d["cut"] is True
    assert [name for name, _ in d["times"]] == ["running", "done"]

    select(widget, "flaky")
    until(lambda: stored(widget, "flaky", "done"), what="the details of 'flaky'")
    d = widget.details
    assert (d["result"], d["cut"], d["attempts"]) == ("42", False, 2)
    first, second = d["attempt_rows"]
    assert (first["attempt"], first["state"], first["error"]) == (
        1,
        "failed",
        "ConnectionError: the first try drops",
    )
    assert (second["attempt"], second["state"], second["error"]) == (2, "succeeded", "")
    assert first["started_at"] <= first["ended_at"] <= second["started_at"] <= second["ended_at"]

    assert d["error"] == ""  # the retry recovered: the error is the first attempt's only

    select(widget, None)  # Escape in the view
    until(lambda: widget.details == {}, what="the panel closed")
    assert widget.selected_step is None
    assert writers == {"evkit-engine"}


@pytest.mark.slow
def test_failed_step_details_show_its_error_and_a_short_traceback_of_its_own_frames(runtime, until):
    handle = broken.step(source.step()).run_async(workflow_id="details-failed")
    widget = run_widget(handle)
    with pytest.raises(workflow.WorkflowExecutionError):
        handle.result(timeout=10)
    until(lambda: widget.status == "FAILED", what="the final push")

    select(widget, "broken")
    until(lambda: stored(widget, "broken", "failed"), what="the details of 'broken'")
    d = widget.details
    assert d["error"] == "ZeroDivisionError: integer division or modulo by zero"
    assert d["result"] is None
    lines = d["traceback"].splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "ZeroDivisionError: integer division or modulo by zero"
    assert "in broken" in d["traceback"]
    assert "in divide" in d["traceback"]
    assert "/evkit/" not in d["traceback"]  # the user's frames only


@pytest.mark.slow
def test_event_step_details_show_payload_and_state_times_in_contract_order(runtime, until):
    wait = workflow.wait_for_event(workflow.ManualListener, key="approve", name="approval")
    handle = echo.step(wait).run_async(workflow_id="details-event")
    widget = run_widget(handle)
    until(lambda: widget.states.get("approval") == "waiting", what="the wait")

    select(widget, "approval")
    until(lambda: stored(widget, "approval", "waiting"), what="the waiting details")
    assert widget.details["payload"] is None
    assert widget.details["label"] == "approval"
    assert [name for name, _ in widget.details["times"]] == ["waiting"]

    workflow.send_event("details-event", "approve", {"ok": True, "note": "y" * 3000})
    assert handle.result(timeout=10)["ok"] is True
    # The panel stays open and follows the step as its state moves on.
    until(lambda: stored(widget, "approval", "committed"), what="the committed details")
    d = widget.details
    assert d["kind"] == "event"
    assert d["listener"] == "ManualListener"
    assert d["args"] == '{"args": [], "kwargs": {"key": "approve"}}'
    assert d["payload"].startswith('{"ok": true, "note": "yyy')
    assert len(d["payload"]) == PREVIEW_CHARS + 1
    assert d["payload"].endswith("…")
    assert d["event_id"]
    times = dict(d["times"])
    assert [name for name, _ in d["times"]] == ["waiting", "received", "checkpointed", "committed"]
    assert times["waiting"] <= times["received"] <= times["checkpointed"] <= times["committed"]
    assert [(a["attempt"], a["state"]) for a in d["attempt_rows"]] == [(1, "committed")]


@pytest.mark.slow  # a real run on a real store
async def test_details_are_read_without_blocking_the_running_loop(aruntime):
    # The default loop mode: the engine, the widget and the selection share the test's loop.
    from blockbuster import blockbuster_ctx

    wait = workflow.wait_for_event(workflow.ManualListener, key="k")
    handle = echo.step(wait).run_async(workflow_id="details-loop")
    await handle.wait_waiting(timeout_seconds=10)
    widget = run_widget(handle)
    changed = asyncio.Event()
    widget.observe(lambda _: changed.set(), names=["details"])
    with blockbuster_ctx():
        select(widget, "ManualListener")
        while not stored(widget, "ManualListener", "waiting"):
            changed.clear()
            await asyncio.wait_for(changed.wait(), 10)
    assert widget.details["args"] == '{"args": [], "kwargs": {"key": "k"}}'
    await handle.cancel_async()


def test_widget_fed_snapshots_shows_what_the_snapshot_has():
    widget = RunWidget.from_snapshot(approval_run(), now=at(4.0).timestamp(), layout_engine="layers")
    select(widget, "approve")
    d = widget.details
    assert (d["step"], d["kind"], d["state"], d["listener"]) == (
        "approve",
        "event",
        "waiting",
        "ManualListener",
    )
    assert d["args"] == '{"args": [], "kwargs": {"key": "ok"}}'
    assert d["attempts"] == 2
    assert d["times"] == [["waiting", at(0.6).timestamp()]]
    assert (d["payload"], d["stored"]) == (None, False)  # previews come from the store

    select(widget, "load")
    assert widget.details["times"] == [["running", T0.timestamp()], ["done", at(0.5).timestamp()]]
    select(widget, "no-such-step")
    assert widget.details == {}


def test_a_malformed_details_message_is_ignored():
    widget = RunWidget.from_snapshot(approval_run(), now=at(4.0).timestamp(), layout_engine="layers")
    seen: list[object] = []
    widget.observe(seen.append, names=traitlets.All)
    widget._handle_custom_msg({"type": "details", "step": 7}, [])
    assert seen == []
