"""What a waiting step costs the garbage collector: the objects it keeps alive, and the GC
settings while a big batch of events is sent."""

from __future__ import annotations

import gc
import threading
from collections.abc import Awaitable

import pytest

import evkit
from evkit import workflow
from evkit.gcscope import BIG_RUN_STEPS

ALL_WAIT = threading.Event()
STARTED: list[int] = []
SEEN_BY_WAITS: list[tuple[int, int, int]] = []
MANY = 1_000  # waits: NotingManualListener sets ALL_WAIT when this many started


class NotingManualListener(workflow.ManualListener):
    """The built-in manual listener, noting started waits; it adds no coroutine of its own."""

    def poll_for_event(self, key: str) -> Awaitable[object]:  # type: ignore[override]
        STARTED.append(1)
        if len(STARTED) == MANY:
            ALL_WAIT.set()
        return super().poll_for_event(key)


class ThresholdManualListener(workflow.ManualListener):
    """Notes the GC thresholds as each wait gets its event."""

    async def poll_for_event(self, key: str) -> object:  # type: ignore[override]
        event = await super().poll_for_event(key)
        SEEN_BY_WAITS.append(gc.get_threshold())
        return event


@workflow.step
def handle(event: object) -> object:
    return event


@workflow.step
def count(*values: object) -> int:
    return len(values)


def tracked_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


def all_waiting(workflow_id: str, waits: int) -> workflow.RunHandle:
    STARTED.clear()
    ALL_WAIT.clear()
    run = workflow.run_async(
        count.step(
            *[handle.step(workflow.wait_for_event(NotingManualListener, f"k{i}")) for i in range(waits)]
        ),
        workflow_id=workflow_id,
    )
    assert ALL_WAIT.wait(60)
    return run


@pytest.mark.slow  # 1,000 waits
def test_a_waiting_step_keeps_few_gc_tracked_objects_alive(runtime: evkit.Runtime) -> None:
    # A first run fills what a process fills once (imports, caches), as big as the second.
    warm_up = all_waiting("warm-up", MANY)
    workflow.send_events("warm-up", [(f"k{i}", i) for i in range(MANY)])
    assert warm_up.result(timeout=60) == MANY
    del warm_up
    before = tracked_objects()
    run = all_waiting("footprint", MANY)
    # The last wait's task is still on its way into its poll: let the loop settle.
    runtime.call(lambda engine: engine.queue.flush())
    per_wait = (tracked_objects() - before) / MANY
    workflow.send_events("footprint", [(f"k{i}", i) for i in range(MANY)])
    assert run.result(timeout=60) == MANY
    # A wait and the step it feeds: their two step records, a task, the listener, its
    # event context, the poll's coroutines and future (24 before the fan-in shared its
    # callback context and the scheduler's coroutine lost a closure cell).
    assert per_wait <= 22.2, f"{per_wait:.1f} GC-tracked objects alive per waiting step"


@pytest.mark.slow  # 5,000 waits
def test_a_big_send_events_works_with_fewer_gc_passes_and_gives_the_thresholds_back(
    runtime: evkit.Runtime,
) -> None:
    SEEN_BY_WAITS.clear()
    before = gc.get_threshold()
    run = workflow.run_async(
        count.step(
            *[workflow.wait_for_event(ThresholdManualListener, f"k{i}") for i in range(BIG_RUN_STEPS)]
        ),
        workflow_id="big-send",
    )
    workflow.send_events("big-send", [(f"k{i}", i) for i in range(BIG_RUN_STEPS)])
    assert gc.get_threshold() == before
    assert run.result(timeout=120) == BIG_RUN_STEPS
    # The waits woke inside send_events (it returns once the events are durable, and
    # they are handed over before that).
    assert SEEN_BY_WAITS
    assert SEEN_BY_WAITS[0][0] > before[0]
    assert gc.get_threshold() == before
