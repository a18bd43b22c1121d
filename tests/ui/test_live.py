"""A widget bound to a real run: coalesced updates from the engine, dynamic steps, and
the "Send" button delivering events, in both loop modes."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time

import pytest
import traitlets
from blockbuster import blockbuster_ctx

import evkit
from evkit import workflow
from evkit.notebook import display, live
from evkit.notebook.display import run_widget
from evkit.notebook.widget import RunWidget

pytestmark = pytest.mark.slow  # real runs on a real store


@workflow.step
def inc(x: int) -> int:
    return x + 1


@workflow.step
def combine(payload: object, base: int) -> tuple[object, int]:
    return payload, base


@workflow.step
def expand(n: int) -> workflow.StepNode:
    node = inc.step(n)
    for _ in range(2):
        node = inc.step(node)
    return node


def approval():
    return combine.step(workflow.wait_for_event(workflow.ManualListener, key="approve"), inc.step(0))


def test_widget_follows_a_run_to_the_end_writing_only_from_the_engine_thread(runtime, until):
    node = inc.step(0)
    for _ in range(40):
        node = inc.step(node)
    handle = node.run_async(workflow_id="chain")
    widget = run_widget(handle)
    writers: set[str] = set()
    widget.observe(lambda _: writers.add(threading.current_thread().name), names=traitlets.All)
    started = time.monotonic()

    assert handle.result(timeout=20) == 41
    until(lambda: widget.status == "SUCCESSFUL", what="the final push")
    elapsed = time.monotonic() - started

    assert set(widget.states.values()) == {"done"}
    assert len(widget.states) == 41
    assert writers <= {"evkit-engine"}
    pushes = display._live[handle].pushes
    assert pushes <= elapsed / live.DEFAULT_MIN_INTERVAL_SECONDS + 3, f"{pushes} pushes in {elapsed:.2f} s"


def test_send_button_delivers_the_typed_payload_to_the_waiting_step(runtime, until):
    handle = approval().run_async(workflow_id="approval")
    widget = run_widget(handle)
    until(lambda: any(r["inbox_key"] == "approve" for r in widget.events), what="the form")

    widget._handle_custom_msg({"type": "send", "step": "ManualListener", "payload": '{"ok": true}'}, [])

    assert handle.result(timeout=10) == ({"ok": True}, 1)
    until(lambda: "ManualListener" in widget.send_status, what="the send status")
    assert widget.send_status["ManualListener"]["ok"] is True
    assert widget.send_status["ManualListener"]["text"] == "sent {'ok': True} to key 'approve'"
    until(lambda: widget.states.get("ManualListener") == "committed", what="the committed state")


def test_pressing_send_twice_delivers_one_event(runtime, until):
    handle = approval().run_async(workflow_id="twice")
    widget = run_widget(handle)
    until(lambda: any(r["inbox_key"] == "approve" for r in widget.events), what="the form")

    for payload in ("first", "second"):
        widget._handle_custom_msg({"type": "send", "step": "ManualListener", "payload": payload}, [])
    until(lambda: widget.send_status.get("ManualListener", {}).get("seq") == 2, what="both sends")

    assert handle.result(timeout=10) == ("first", 1)
    rows = evkit.sql("SELECT payload FROM inbox_events WHERE workflow_id = 'twice'").fetchall()
    assert rows == [('"first"',)]


def test_send_failure_is_shown_in_the_widget_not_raised(runtime, until, monkeypatch):
    def lost(workflow_id, key, payload, *, event_id=None):
        raise evkit.WorkflowNotFoundError(
            f"Run {workflow_id!r} is not in store 'x.duckdb'. List the known runs with workflow.list_all().",
            workflow_id=workflow_id,
        )

    handle = approval().run_async(workflow_id="lost")
    widget = run_widget(handle)
    until(lambda: any(r["inbox_key"] == "approve" for r in widget.events), what="the form")
    monkeypatch.setattr(live.api, "send_event", lost)

    widget._handle_custom_msg({"type": "send", "step": "ManualListener", "payload": "1"}, [])
    widget._handle_custom_msg({"type": "send", "step": "inc", "payload": "1"}, [])  # not an event step

    until(lambda: len(widget.send_status) == 2, what="both error messages")
    assert widget.send_status["ManualListener"] == {
        "ok": False,
        "text": "WorkflowNotFoundError: Run 'lost' is not in store 'x.duckdb'. List the known runs with "
        "workflow.list_all().",
        "seq": widget.send_status["ManualListener"]["seq"],
    }
    assert widget.send_status["inc"]["text"].startswith("Step 'inc' is not waiting for a manual event")
    assert not handle.done()
    handle.cancel()


def test_dynamic_steps_are_laid_out_when_they_appear(runtime, until):
    handle = expand.step(1).run_async(workflow_id="dynamic")
    widget = run_widget(handle)
    assert handle.result(timeout=10) == 4
    until(lambda: len(widget.nodes) == 4, what="the re-layout")
    assert {n["id"] for n in widget.nodes} == set(widget.states)
    assert any("/" in n["id"] for n in widget.nodes)


async def test_default_loop_mode_updates_and_sends_on_the_running_loop_without_blocking_it(aruntime):
    # The test's loop plays the kernel's: the engine runs on it, the widget is made on
    # it and the "click" arrives on it, as in a notebook with the default loop mode.
    handle = approval().run_async(workflow_id="kernel-loop")
    widget = run_widget(handle)
    assert handle.engine_loop is asyncio.get_running_loop()
    with blockbuster_ctx() as bb:
        for name in ("threading.Lock.acquire", "threading.Lock.acquire_lock"):
            bb.functions[name].can_block_functions.append(("evkit/clock.py", {"sleep_until"}))
        deadline = time.monotonic() + 10
        while not any(r["inbox_key"] == "approve" for r in widget.events):
            assert time.monotonic() < deadline, "the form never appeared"
            await asyncio.sleep(0.01)
        widget._handle_custom_msg({"type": "send", "step": "ManualListener", "payload": "7"}, [])
        assert await asyncio.wait_for(handle, 10) == (7, 1)
        while widget.status != "SUCCESSFUL":
            assert time.monotonic() < deadline, "the final state never arrived"
            await asyncio.sleep(0.01)
    assert widget.send_status["ManualListener"]["ok"] is True


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is not installed")
def test_small_dag_is_laid_out_by_the_browser_first_and_dot_drawing_is_swapped_in_from_the_loop(
    runtime, until
):
    handle = approval().run_async(workflow_id="swap")
    widget = run_widget(handle)
    writers: set[str] = set()
    widget.observe(lambda _: writers.add(threading.current_thread().name), names=["nodes"])
    first = list(widget.nodes)

    until(lambda: widget.dag_layout is not None and widget.dag_layout.engine == "dot", what="dot's drawing")

    assert all("x" not in n for n in first)  # no positions: the browser lays these out
    assert {n["id"] for n in widget.nodes} == set(widget.states)
    assert all("x" in n and "y" in n for n in widget.nodes)
    assert widget.width > 0
    assert writers == {"evkit-engine"}
    handle.cancel()


def test_pushes_are_spaced_by_their_own_cost(runtime, until):
    handle = approval().run_async(workflow_id="paced")
    widget = RunWidget.from_snapshot(handle.snapshot(), layout_engine="layers")
    started = time.monotonic()
    # As if building the widget had cost 20 ms: the next push waits 20 x 20 ms = 0.4 s.
    paced = live.LiveRun(handle, widget, layout_engine="layers", first_push=(started, 0.02))
    paced.start()

    until(lambda: paced.pushes >= 1, what="the first paced push")

    assert time.monotonic() - started >= live.COST_FACTOR * 0.02 - 0.01
    paced.close()
    handle.cancel()


@workflow.step
def count(*payloads: object) -> int:
    return len(payloads)


def test_a_page_request_shows_that_page_of_a_running_runs_event_table(runtime, until):
    waits = [workflow.wait_for_event(workflow.ManualListener, key=f"k{i}") for i in range(120)]
    handle = count.step(*waits).run_async(workflow_id="paged")
    widget = run_widget(handle)
    until(lambda: widget.event_total == 120 and widget.status == "WAITING", what="all 120 waits")
    assert len(widget.events) == 50

    widget._handle_custom_msg({"type": "page", "offset": 100}, [])  # as the view's "next" does

    until(lambda: widget.event_offset == 100, what="the last page")
    assert [r["inbox_key"] for r in widget.events] == [f"k{i}" for i in range(100, 120)]
    workflow.send_events("paged", [(f"k{i}", i) for i in range(120)])
    assert handle.result(timeout=20) == 120
    until(lambda: widget.status == "SUCCESSFUL", what="the final push")
    assert {r["state"] for r in widget.events} == {"committed"}
    assert widget.event_offset == 100  # the page stays where the user put it


def test_progress_has_every_state_and_one_page_of_event_records(runtime, until):
    waits = [workflow.wait_for_event(workflow.ManualListener, key=f"k{i}") for i in range(7)]
    handle = count.step(*waits).run_async(workflow_id="progress")
    until(lambda: handle.progress().status == evkit.WorkflowStatus.WAITING, what="the waits")

    progress = handle.progress(event_offset=4, event_limit=3)
    snapshot = handle.snapshot()

    assert progress.states == {s.step_id: s.state for s in snapshot.steps}
    assert progress.shapes == tuple((s.step_id, s.kind, s.upstream) for s in snapshot.steps)
    assert (progress.event_offset, progress.event_total) == (3, 7)  # moved onto a page start
    assert progress.events == snapshot.steps[3:6]
    assert handle.progress().shapes is progress.shapes  # no step added: the same tuple
    workflow.send_events("progress", [(f"k{i}", i) for i in range(7)])
    assert handle.result(timeout=20) == 7
