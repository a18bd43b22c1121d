"""Scenario 3: durable checkpoint throughput under a steady stream of events.

N event steps wait on an in-memory stream (:class:`bench.listeners.StreamListener`); once
all wait, a producer on the engine's loop releases the events in chunks, one chunk per
loop iteration, as fast as the loop takes them. Measured: events per second from the
first release until ``event_checkpointed`` (which runs only after the checkpoint is
durable) has run for all N. Group commit is what makes this more than ~700 events/s.
"""

from __future__ import annotations

import asyncio
import pickle
import time

from bench.common import peak_rss_mb, temp_store
from bench.floor import FloorStore, now

CHUNK = 1000


async def _produce(release: object, n: int) -> None:
    for start in range(0, n, CHUNK):
        for i in range(start, min(n, start + CHUNK)):
            release(i)  # type: ignore[operator]
        await asyncio.sleep(0)


def evkit_throughput(n: int) -> dict[str, float]:
    from bench.listeners import COMMITS, POLLS, STREAM, StreamListener
    from evkit import workflow

    with temp_store() as path:
        runtime = workflow.init(storage=path, loop="thread")

        @workflow.step
        def count(*events: int) -> int:
            return len(events)

        POLLS.reset(n)
        COMMITS.reset(n)
        handle = workflow.run_async(
            count.step(*[workflow.wait_for_event(StreamListener, i) for i in range(n)]), workflow_id="stream"
        )
        POLLS.reached.wait()
        start = time.perf_counter()
        producer = runtime.call_soon(lambda engine: engine.loop.create_task(_produce(STREAM.release, n)))
        COMMITS.reached.wait()
        elapsed = time.perf_counter() - start
        batches_before = runtime.engine().queue.batches_written
        assert handle.result() == n
        assert producer.done()
        workflow.shutdown()
    return {
        "events_per_s": n / elapsed,
        "total_s": elapsed,
        "batches": batches_before,
        "rss_mb": peak_rss_mb(),
    }


def floor_throughput(n: int) -> dict[str, float]:
    with temp_store() as path:
        return asyncio.run(_floor(path, n))


async def _floor(path: str, n: int) -> dict[str, float]:
    store = FloorStore(path)
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(n)]
    committed = 0
    done = loop.create_future()

    async def wait(i: int) -> int:
        nonlocal committed
        event = await futures[i]
        await store.append("events", (f"wait_{i}", "checkpointed", now(), pickle.dumps(event)))
        committed += 1  # event_checkpointed would run here
        store.append("events", (f"wait_{i}", "committed", now(), None))
        if committed == n:
            done.set_result(None)
        return event

    tasks = [loop.create_task(wait(i)) for i in range(n)]
    await asyncio.sleep(0)
    start = time.perf_counter()
    producer = loop.create_task(_produce(lambda i: futures[i].set_result(i), n))
    await done
    elapsed = time.perf_counter() - start
    await asyncio.gather(producer, *tasks)
    batches = store.batches
    await store.aclose()
    return {"events_per_s": n / elapsed, "total_s": elapsed, "batches": batches, "rss_mb": peak_rss_mb()}
