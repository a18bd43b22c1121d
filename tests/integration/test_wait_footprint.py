"""What a waiting step costs the garbage collector: the objects it keeps alive, and the GC
settings while a big batch of events is sent."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

import evkit
from evkit import workflow
from evkit.gcscope import BIG_RUN_STEPS

SEEN_BY_WAITS: list[tuple[int, int, int]] = []


class ThresholdManualListener(workflow.ManualListener):
    """Notes the GC thresholds as each wait gets its event."""

    async def poll_for_event(self, key: str) -> object:  # type: ignore[override]
        event = await super().poll_for_event(key)
        SEEN_BY_WAITS.append(gc.get_threshold())
        return event


@workflow.step
def count(*values: object) -> int:
    return len(values)


# Run in a fresh process: what earlier tests left alive must not count.
FOOTPRINT = """
import gc, sys, threading
from collections.abc import Awaitable
from evkit import workflow

MANY = 3_000
all_wait = threading.Event()
started = []


def note_started():
    started.append(1)
    if len(started) == MANY:
        all_wait.set()


class NotingManualListener(workflow.ManualListener):
    # The built-in listener, noting started waits as the engine describes each: its
    # waits stay parked until their event comes. The note goes through sys.modules: the
    # class is pickled by value, without the Event.
    @classmethod
    def describe_wait(cls, args, kwargs, *, now):
        sys.modules["__main__"].note_started()
        return super().describe_wait(args, kwargs, now=now)


class PollingManualListener(workflow.ManualListener):
    # The same, with a poll of its own (a plain def adding no coroutine): never parked.
    def poll_for_event(self, key) -> Awaitable[object]:
        sys.modules["__main__"].note_started()
        return super().poll_for_event(key)


LISTENER = {"parked": NotingManualListener, "polling": PollingManualListener}[sys.argv[2]]


@workflow.step
def handle(event):
    return event


@workflow.step
def count(*values):
    return len(values)


def tracked():
    gc.collect()
    return len(gc.get_objects())


def all_waiting(workflow_id):
    started.clear()
    all_wait.clear()
    waits = [workflow.wait_for_event(LISTENER, f"k{i}") for i in range(MANY)]
    run = workflow.run_async(count.step(*[handle.step(w) for w in waits]), workflow_id=workflow_id)
    assert all_wait.wait(60)
    return run


runtime = workflow.init(storage=sys.argv[1], loop="thread")
# A first run fills what a process fills once (imports, caches), as big as the second.
warm_up = all_waiting("warm-up")
workflow.send_events("warm-up", [(f"k{i}", i) for i in range(MANY)])
assert warm_up.result(timeout=60) == MANY
del warm_up
before = tracked()
run = all_waiting("footprint")
runtime.call(lambda engine: engine.queue.flush())  # the last wait's task settles into its poll
per_wait = (tracked() - before) / MANY
workflow.send_events("footprint", [(f"k{i}", i) for i in range(MANY)])
assert run.result(timeout=60) == MANY
workflow.shutdown()
print("PER_WAIT", per_wait)
"""


@pytest.mark.slow  # a fresh process and 6,000 waits
@pytest.mark.parametrize(
    ("mode", "most"),
    [
        # A parked wait and the step it feeds: their two step records and views, their
        # refs, the parked step's future and the inbox's, its callback and wait list.
        ("parked", 12.0),
        # A polling wait holds a task, its context, the listener and its event context,
        # the poll's coroutines and future besides (24 before the fan-in shared its
        # callback context and the scheduler's coroutine lost a closure cell).
        ("polling", 22.5),
    ],
)
def test_a_waiting_step_keeps_few_gc_tracked_objects_alive(tmp_path: Path, mode: str, most: float) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FOOTPRINT, str(tmp_path / "store.duckdb"), mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    per_wait = float(proc.stdout.split("PER_WAIT")[1])
    assert per_wait <= most, f"{per_wait:.1f} GC-tracked objects alive per {mode} waiting step"


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
