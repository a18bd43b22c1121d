"""A workflow run in a child process that the crash tests SIGKILL at a named point.

Usage: python -u _child.py DB_PATH SCENARIO COUNTER_FILE. With EVKIT_CRASH_AT=<point> it
prints ``READY <point>`` and blocks there; the parent kills it. Every listener and step
call appends a line to COUNTER_FILE so the parent can count them across processes.
Functions read the environment at call time: they are pickled by value into the store,
and the parent resumes them without EVKIT_CRASH_AT set.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading

from evkit import workflow


def mark(counter: str, what: str) -> None:
    with open(counter, "a") as f:
        f.write(what + "\n")


def ready(point: str) -> None:
    print(f"READY {point}", flush=True)


def wait_until_stored(count_query: str) -> None:
    """Block until the query counts a row: rows like 'waiting' are written behind, and a
    test that kills the child must know what the store holds."""
    while not workflow.sql(count_query).fetchall()[0][0]:
        threading.Event().wait(0.01)


def crash_point(point: str) -> bool:
    return os.environ.get("EVKIT_CRASH_AT") == point


class CountingListener(workflow.EventListener):
    """Delivers ``(counter, payload)`` and commits by writing a line (idempotency is the
    parent's concern: it counts the lines)."""

    async def poll_for_event(self, counter: str, payload: int) -> tuple[str, int]:
        mark(counter, "poll")
        if crash_point("polling"):
            await asyncio.to_thread(wait_until_stored, "SELECT count(*) FROM events WHERE state = 'waiting'")
            ready("polling")
            await asyncio.Event().wait()
        return counter, payload

    async def event_checkpointed(self, event: tuple[str, int]) -> None:
        counter, _ = event
        if crash_point("checkpointed"):
            ready("checkpointed")
            await asyncio.Event().wait()
        mark(counter, "commit")
        if crash_point("committing"):
            ready("committing")
            await asyncio.Event().wait()


@workflow.step
def downstream(event: tuple[str, int]) -> int:
    counter, payload = event
    mark(counter, "downstream")
    if crash_point("downstream"):
        wait_until_stored("SELECT count(*) FROM events WHERE state = 'committed'")
        ready("downstream")
        threading.Event().wait()
    return payload * 2


@workflow.step
def done(_: object) -> str:
    return "timer done"


def main() -> None:
    db, scenario, counter = sys.argv[1:4]
    workflow.init(storage=db, loop="thread")
    if scenario == "event":
        node = downstream.step(workflow.wait_for_event(CountingListener, counter, 21))
        print(repr(node.run(workflow_id="crash")), flush=True)
    elif scenario == "timer":
        handle = workflow.run_async(done.step(workflow.sleep(2.0)), workflow_id="timer")
        wait_until_stored("SELECT count(*) FROM events WHERE deadline IS NOT NULL")
        ready("timer-waiting")
        print(repr(handle.result()), flush=True)
    elif scenario == "sent":
        # Sent to a step already waiting for it: the event is handed over (stored by the
        # checkpoint alone); the downstream step then blocks at the crash point.
        handle = workflow.run_async(
            downstream.step(workflow.wait_for_event(workflow.ManualListener, "k")), workflow_id="sent"
        )
        wait_until_stored("SELECT count(*) FROM events WHERE state = 'waiting'")
        workflow.send_event("sent", "k", (counter, 21), event_id="e1")
        print(repr(handle.result()), flush=True)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    main()
