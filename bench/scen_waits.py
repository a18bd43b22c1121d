"""Scenario 1: N concurrent event waits (manual events or timers), each feeding a step.

The run is ``collect(handle(wait_1), ..., handle(wait_N))``. Measured: from the start of
the run until every event is checkpointed, committed and its ``handle`` step has run
(the run's output is back), and the process's peak RSS.
"""

from __future__ import annotations

import asyncio
import pickle
import time

from bench.common import Stopwatch, peak_rss_mb, temp_store
from bench.floor import FloorStore, now


def evkit_waits(n: int, kind: str, delay: float) -> dict[str, float]:
    """Run the evkit side; ``delay`` is the timers' wait (seconds after the start)."""
    watch = Stopwatch()
    from evkit import workflow

    with temp_store() as path:
        workflow.init(storage=path, loop="thread")
        watch.lap("import+init")

        from bench.listeners import POLLS, CountingManualListener, collect, handle

        POLLS.reset(n)
        start, cpu = time.perf_counter(), time.process_time()
        if kind == "timer":
            deadline = time.time() + delay
            make = lambda i: workflow.wait_for_event(workflow.TimerListener, deadline)  # noqa: E731
        else:
            make = lambda i: workflow.wait_for_event(CountingManualListener, f"k{i}")  # noqa: E731
        # As a user would write it: the run keeps what it needs, the nodes are not kept.
        handle_ = workflow.run_async(
            collect.step(*[handle.step(make(i)) for i in range(n)]), workflow_id="waits"
        )
        laps: dict[str, float] = {}
        if kind == "manual":
            POLLS.reached.wait()
            laps["register_s"] = time.perf_counter() - start
            workflow.send_events("waits", [(f"k{i}", i) for i in range(n)])
            laps["sent_s"] = time.perf_counter() - start
        out = handle_.result()
        total, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert out == n, out
        workflow.shutdown()
    waited = delay if kind == "timer" else 0.0
    return {"total_s": total, "cpu_s": cpu, "overhead_s": total - waited, "rss_mb": peak_rss_mb(), **laps}


def floor_waits(n: int, kind: str, delay: float) -> dict[str, float]:
    """The same cycle with asyncio futures/sleeps and a group-commit Arrow writer."""
    with temp_store() as path:
        return asyncio.run(_floor(path, n, kind, delay))


async def _floor(path: str, n: int, kind: str, delay: float) -> dict[str, float]:
    store = FloorStore(path)
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    deadline = loop.time() + delay
    futures = {f"k{i}": loop.create_future() for i in range(n)} if kind == "manual" else {}
    started = 0
    all_started = asyncio.Event()

    def handle(event: object) -> object:
        return event

    async def wait(i: int) -> object:
        nonlocal started
        started += 1
        if started == n:
            all_started.set()
        if kind == "manual":
            event = await futures[f"k{i}"]
        else:
            await asyncio.sleep(deadline - loop.time())
            event = None
        step = f"wait_{i}"
        await store.append("events", (step, "checkpointed", now(), pickle.dumps(event)))  # durable first
        store.append("events", (step, "committed", now(), None))
        value = handle(event)
        store.append("results", (f"handle_{i}", "succeeded", now(), pickle.dumps(value)))
        return value

    tasks = [loop.create_task(wait(i)) for i in range(n)]
    laps: dict[str, float] = {}
    if kind == "manual":
        await all_started.wait()
        laps["register_s"] = time.perf_counter() - start
        rows = [(f"k{i}", f"e{i}", now(), pickle.dumps(i)) for i in range(n)]
        await store.append_many("inbox", rows)
        for i in range(n):
            futures[f"k{i}"].set_result(i)
        laps["sent_s"] = time.perf_counter() - start
    values = await asyncio.gather(*tasks)
    store.append("results", ("collect", "succeeded", now(), pickle.dumps(len(values))))
    await store.flush()
    total = time.perf_counter() - start
    await store.aclose()
    waited = delay if kind == "timer" else 0.0
    return {"total_s": total, "overhead_s": total - waited, "rss_mb": peak_rss_mb(), **laps}
