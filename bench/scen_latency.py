"""Scenario 2: latency from an event being sent to its downstream step starting.

A run waits on K manual events, each feeding a ``def`` step that notes when it starts.
The main thread sends the events one at a time (``workflow.send_event``, which returns
once the event is durable), each ``pause`` seconds after the previous one arrived: 5 ms
(the writer may still be committing the previous event's write-behind rows) or 25 ms (an
idle process: each latency alone, threads woken from sleep).
The floor does the same with a loop thread, a future per key, the group-commit writer
(an event sent to a waiting step is stored once, by its checkpoint row, as evkit does) and
a thread-pool step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import pickle
import threading
import time

from bench.common import peak_rss_mb, percentile, temp_store
from bench.floor import FloorStore, _write, create_tables, now

STARTED: dict[int, float] = {}
ARRIVED = threading.Event()


def note_start(i: int) -> int:
    STARTED[i] = time.perf_counter()
    ARRIVED.set()
    return i


def _stats(latencies: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in latencies]
    return {
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "rss_mb": peak_rss_mb(),
    }


def evkit_latency(k: int, pause: float) -> dict[str, float]:
    from bench.listeners import POLLS, CountingManualListener
    from evkit import workflow

    with temp_store() as path:
        workflow.init(storage=path, loop="thread")
        step = workflow.step(note_start)

        @workflow.step
        def done(*values: int) -> int:
            return len(values)

        POLLS.reset(k)
        node = done.step(
            *[step.step(workflow.wait_for_event(CountingManualListener, f"k{i}")) for i in range(k)]
        )
        handle = workflow.run_async(node, workflow_id="latency")
        POLLS.reached.wait()
        time.sleep(0.2)  # let the run settle into WAITING
        sent: dict[int, float] = {}
        for i in range(k):
            sent[i] = time.perf_counter()
            workflow.send_event("latency", f"k{i}", i)
            ARRIVED.wait()  # the next event only once this one arrived
            ARRIVED.clear()
            time.sleep(pause)
        assert handle.result() == k
        workflow.shutdown()
    return _stats([STARTED[i] - sent[i] for i in range(k)])


def floor_latency(k: int, pause: float) -> dict[str, float]:
    with temp_store() as path:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        pool = concurrent.futures.ThreadPoolExecutor(4)
        store: FloorStore = asyncio.run_coroutine_threadsafe(_make_store(path), loop).result()
        futures = asyncio.run_coroutine_threadsafe(_make_futures(k), loop).result()

        async def wait(i: int) -> int:
            event, handed_over = await futures[i]
            durable = store.append("events", (f"wait_{i}", "checkpointed", now(), pickle.dumps(event)))
            handed_over.set_result(durable)  # the checkpoint is the send's durable record
            await durable
            store.append("events", (f"wait_{i}", "committed", now(), None))
            value = await loop.run_in_executor(pool, note_start, i)
            store.append("results", (f"step_{i}", "succeeded", now(), pickle.dumps(value)))
            return value

        async def start_all() -> list[asyncio.Future[int]]:
            return [asyncio.ensure_future(wait(i)) for i in range(k)]

        async def send(i: int) -> None:
            handed_over: asyncio.Future[asyncio.Future[None]] = loop.create_future()
            futures[i].set_result((i, handed_over))
            await (await handed_over)

        tasks = asyncio.run_coroutine_threadsafe(start_all(), loop).result()
        time.sleep(0.2)
        sent: dict[int, float] = {}
        for i in range(k):
            sent[i] = time.perf_counter()
            asyncio.run_coroutine_threadsafe(send(i), loop).result()
            ARRIVED.wait()
            ARRIVED.clear()
            time.sleep(pause)

        async def finish() -> None:
            await asyncio.gather(*tasks)
            await store.aclose()

        asyncio.run_coroutine_threadsafe(finish(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        pool.shutdown()
    return _stats([STARTED[i] - sent[i] for i in range(k)])


def commit_latency(k: int, pause: float) -> dict[str, float]:
    """The commit alone: the event's checkpoint row (which records the send too), timed on
    the writing thread with the same pauses between events. Part of every floor above.

    On a VM the pause matters: after ~25 ms idle the same transaction took about twice as
    long as back to back (CPU caches and the vCPU's idle state).
    """
    import duckdb

    with temp_store() as path:
        con = duckdb.connect(path)
        create_tables(con)
        times = []
        for i in range(k):
            rows = {"events": [(f"wait_{i}", "checkpointed", now(), pickle.dumps(i))]}
            start = time.perf_counter()
            _write(con, rows)
            times.append(time.perf_counter() - start)
            time.sleep(pause)
        con.close()
    return _stats(times)


async def _make_store(path: str) -> FloorStore:
    return FloorStore(path)


# What a floor wait gets from its send: the event, and where to hand its checkpoint's future.
Delivery = tuple[int, "asyncio.Future[asyncio.Future[None]]"]


async def _make_futures(k: int) -> dict[int, asyncio.Future[Delivery]]:
    loop = asyncio.get_running_loop()
    return {i: loop.create_future() for i in range(k)}
