"""A re-run in a child process that the crash tests SIGKILL at a named point.

Usage: python -u _rerun_child.py DB_PATH SCENARIO COUNTER_FILE. Scenario ``first`` runs
a DAG whose ``downstream`` step has a bug: the run fails (the process exits normally).
Scenario ``fixed`` runs the same DAG with ``downstream`` fixed under the same run id:
the re-run reuses ``prep`` and the checkpointed event, and ``downstream`` prints
``READY rerunning`` and blocks (the parent kills it). Scenario ``repoll`` re-runs it
naming the event in ``repoll``: the new poll prints ``READY repolling`` and blocks.
Every listener and step call appends a line to COUNTER_FILE. Functions read the
environment at call time: they are pickled by value, and the parent resumes them
without EVKIT_CRASH_AT set.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import evkit
from evkit import workflow


def mark(counter: str, what: str) -> None:
    with open(counter, "a") as f:
        f.write(what + "\n")


def crash_here(point: str) -> bool:
    if os.environ.get("EVKIT_CRASH_AT") != point:
        return False
    print(f"READY {point}", flush=True)
    return True


class CountingListener(workflow.EventListener):
    """Delivers ``(counter, payload)``; its commit writes a line."""

    async def poll_for_event(self, counter: str, payload: int) -> tuple[str, int]:
        mark(counter, "poll")
        if crash_here("repolling"):
            await asyncio.Event().wait()
        return counter, payload

    async def event_checkpointed(self, event: tuple[str, int]) -> None:
        mark(event[0], "commit")


@workflow.step
def prep(counter: str) -> int:
    mark(counter, "prep")
    return 1


def broken(event: tuple[str, int], base: int) -> int:
    mark(event[0], "downstream v1")
    raise ValueError("bug")


def fixed(event: tuple[str, int], base: int) -> int:
    mark(event[0], "downstream v2")
    if crash_here("rerunning"):
        threading.Event().wait()
    return event[1] * 2 + base


def main() -> None:
    db, scenario, counter = sys.argv[1:4]
    workflow.init(storage=db, loop="thread")
    body = broken if scenario == "first" else fixed
    body.__name__ = body.__qualname__ = "downstream"  # one step, edited: as a notebook cell
    downstream = workflow.step(max_retries=0)(body)
    node = downstream.step(
        workflow.wait_for_event(CountingListener, counter, 21, name="approval"), prep.step(counter)
    )
    repoll = ["approval"] if scenario == "repoll" else []
    try:
        print(repr(node.run(workflow_id="crash", repoll=repoll)), flush=True)
    except evkit.StepFailedError as exc:
        print(f"FAILED {exc}", flush=True)
    workflow.shutdown()


if __name__ == "__main__":
    main()
