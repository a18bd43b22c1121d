"""Scenario 5: resume of a workflow with N checkpointed events and N checkpointed steps.

Setup (not timed, its own process): a run ``finish(handle(wait_1), ..., handle(wait_N))``
gets all N manual events, checkpoints every wait and every ``handle`` step, and then
fails in ``finish`` on purpose. Measured (a fresh process): ``workflow.resume`` from the
call to the output: load the run's checkpoints and its DAG, skip every checkpointed step,
run ``finish``. The floor reads the same number of checkpoint rows (plain DuckDB, Arrow
fetch) into dicts, unpickles them and runs ``finish``.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import time

from bench.common import peak_rss_mb
from bench.floor import FloorStore, now

WORKFLOW_ID = "resume"


def handle(event: object) -> object:
    return event


def finish(*values: object) -> int:
    if os.environ.get("EVKIT_BENCH_RESUME_OK") != "1":
        raise RuntimeError("failing on purpose: the benchmark resumes this run")
    return len(values)


def evkit_setup(path: str, n: int) -> dict[str, float]:
    from evkit import workflow

    workflow.init(storage=path, loop="thread")
    handle_step = workflow.step(handle)
    finish_step = workflow.step(finish).options(max_retries=0)
    node = finish_step.step(
        *[handle_step.step(workflow.wait_for_event(workflow.ManualListener, f"k{i}")) for i in range(n)]
    )
    run = workflow.run_async(node, workflow_id=WORKFLOW_ID)
    workflow.send_events(WORKFLOW_ID, [(f"k{i}", i) for i in range(n)])
    try:
        run.result()
    except workflow.WorkflowExecutionError:
        pass
    else:  # pragma: no cover - the run must fail so that it can be resumed
        raise AssertionError("the setup run was expected to fail in finish()")
    workflow.shutdown()
    return {}


def evkit_resume(path: str, n: int) -> dict[str, float]:
    os.environ["EVKIT_BENCH_RESUME_OK"] = "1"
    start = time.perf_counter()
    from evkit import workflow

    workflow.init(storage=path, loop="thread")
    opened = time.perf_counter()
    out = workflow.resume(WORKFLOW_ID)
    done = time.perf_counter()
    assert out == n, out
    workflow.shutdown()
    return {"resume_s": done - opened, "with_import_s": done - start, "rss_mb": peak_rss_mb()}


def floor_setup(path: str, n: int) -> dict[str, float]:
    async def write() -> None:
        store = FloorStore(path)
        store.append_many("events", [(f"wait_{i}", "checkpointed", now(), pickle.dumps(i)) for i in range(n)])
        store.append_many("events", [(f"wait_{i}", "committed", now(), None) for i in range(n)])
        store.append_many("results", [(f"handle_{i}", "succeeded", now(), pickle.dumps(i)) for i in range(n)])
        await store.aclose()

    asyncio.run(write())
    return {}


def floor_resume(path: str, n: int) -> dict[str, float]:
    os.environ["EVKIT_BENCH_RESUME_OK"] = "1"
    import duckdb

    start = time.perf_counter()
    con = duckdb.connect(path)
    events = {
        step: pickle.loads(blob)
        for step, blob in con.execute(
            "SELECT step, payload FROM events WHERE state = 'checkpointed'"
        ).fetchall()
    }
    committed = {
        step for (step,) in con.execute("SELECT step FROM events WHERE state = 'committed'").fetchall()
    }
    results = {
        step: pickle.loads(blob) for step, blob in con.execute("SELECT step, result FROM results").fetchall()
    }
    values = [results[f"handle_{i}"] for i in range(n) if f"wait_{i}" in events and f"wait_{i}" in committed]
    out = finish(*values)
    done = time.perf_counter()
    con.close()
    assert out == n, out
    return {"resume_s": done - start, "with_import_s": done - start, "rss_mb": peak_rss_mb()}
