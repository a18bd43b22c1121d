"""A workflow.wait_for_any run in a child process that the crash tests SIGKILL at a named point.

Usage: python -u _any_of_child.py DB_PATH COUNTER_FILE. With EVKIT_CRASH_AT=<point> it
prints ``READY <point>`` and blocks there; the parent kills it. Every listener hook and
step call appends a line to COUNTER_FILE, so the parent can count them across processes.
The listener and the step read the environment at call time: they are pickled by value
into the store, and the parent resumes them without EVKIT_CRASH_AT set.
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


def crash_point(point: str) -> bool:
    return os.environ.get("EVKIT_CRASH_AT") == point


def wait_until_stored(count_query: str) -> None:
    """Block until the query counts a row: rows like 'waiting' are written behind."""
    while not workflow.sql(count_query).fetchall()[0][0]:
        threading.Event().wait(0.01)


class BranchListener(workflow.EventListener):
    """Returns ``(counter, name, payload)``, or never when ``payload`` is None."""

    async def poll_for_event(self, counter: str, name: str, payload: int | None) -> tuple[str, str, int]:
        mark(counter, f"poll {name}")
        if payload is None or crash_point("polling"):
            if payload is not None:
                # The other branch's poll started in the same loop iteration as this one.
                await asyncio.to_thread(
                    wait_until_stored, "SELECT count(*) FROM events WHERE state = 'waiting'"
                )
                ready("polling")
            await asyncio.Event().wait()
        return counter, name, payload

    async def poll_cancelled(self, counter: str, name: str, payload: int | None) -> None:
        mark(counter, f"cleanup {name}")

    async def event_checkpointed(self, event: tuple[str, str, int]) -> None:
        counter, name, _ = event
        if crash_point("checkpointed"):
            ready("checkpointed")
            await asyncio.Event().wait()
        mark(counter, f"commit {name}")


@workflow.step
def downstream(decided: tuple[str, tuple[str, str, int]]) -> str:
    name, (counter, _, payload) = decided
    mark(counter, "downstream")
    return f"{name} {payload * 2}"


def main() -> None:
    db, counter = sys.argv[1:3]
    workflow.init(storage=db, loop="thread")
    decided = workflow.wait_for_any(
        {
            "first": workflow.wait_for_event(BranchListener, counter, "first", 21),
            "second": workflow.wait_for_event(BranchListener, counter, "second", None),
        }
    )
    print(repr(downstream.step(decided).run(workflow_id="any")), flush=True)


if __name__ == "__main__":
    main()
