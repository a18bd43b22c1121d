"""Scenario 4: per-step overhead of a 1,000-step chain and a 1,000-step fan-in, checkpointed.

Chain: ``add(add(...add(0, 1)..., 1), 1)``; fan-in: ``total(one(0), ..., one(n-1))``. The
bodies do nothing, so the time per step is evkit's overhead. The floor runs the same
bodies as asyncio tasks (each in the default thread pool, as evkit runs plain ``def``
steps) and writes each result behind with the group-commit writer.
"""

from __future__ import annotations

import asyncio
import pickle
import time

from bench.common import peak_rss_mb, temp_store
from bench.floor import FloorStore, now


def add(a: int, b: int) -> int:
    return a + b


def one(i: int) -> int:
    return 1


def total(*values: int) -> int:
    return sum(values)


def evkit_steps(n: int, shape: str) -> dict[str, float]:
    from evkit import workflow

    with temp_store() as path:
        workflow.init(storage=path, loop="thread")
        add_step, one_step, total_step = workflow.step(add), workflow.step(one), workflow.step(total)
        # Warm up: the first run pays one-off costs (imports, threads) that are not per step.
        add_step.step(0, 1).run(workflow_id="warmup")
        start, cpu = time.perf_counter(), time.process_time()
        if shape == "chain":
            node = add_step.step(0, 1)
            for _ in range(n - 1):
                node = add_step.step(node, 1)
        else:
            node = total_step.step(*[one_step.step(i) for i in range(n)])
        out = node.run(workflow_id=shape)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert out == n, out
        workflow.shutdown()
    return {"total_s": elapsed, "cpu_s": cpu, "per_step_ms": elapsed / n * 1000, "rss_mb": peak_rss_mb()}


def floor_steps(n: int, shape: str) -> dict[str, float]:
    with temp_store() as path:
        return asyncio.run(_floor(path, n, shape))


async def _floor(path: str, n: int, shape: str) -> dict[str, float]:
    store = FloorStore(path)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, add, 0, 1)  # warm the thread pool, as evkit's warm-up run does
    start = time.perf_counter()

    async def run(name: str, func: object, *args: object) -> int:
        value = await loop.run_in_executor(None, func, *args)  # type: ignore[arg-type]
        store.append("results", (name, "succeeded", now(), pickle.dumps(value)))  # write-behind
        return value  # type: ignore[return-value]

    if shape == "chain":
        value = 0
        for i in range(n):
            value = await run(f"add_{i}", add, value, 1)
        out = value
    else:
        values = await asyncio.gather(*[run(f"one_{i}", one, i) for i in range(n - 1)])
        out = await run("total", total, *values) + 1
    await store.flush()  # the run's output is durable
    elapsed = time.perf_counter() - start
    assert out == n, out
    await store.aclose()
    return {"total_s": elapsed, "per_step_ms": elapsed / n * 1000, "rss_mb": peak_rss_mb()}
