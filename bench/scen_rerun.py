"""Scenario 10: re-runs. Deciding what a re-run reuses, and what fingerprinting costs a first run.

Plan: a 100,000-step fan-in ``total(one(0), ..., one(n-1))`` was run (the store keeps its
DAG and its record: one code digest per function); the user changes one literal and runs
it again. Measured, as the engine does it: the new DAG's code digests (at the call),
loading the stored DAG, both sides' step fingerprints and deciding step by step what to
reuse (``make_plan``). The floor compares two precomputed dicts of digests. Loading the
run's checkpoints is the resume's cost (scenario 5).

A first run: the 100,000-wait and chain scenarios with fingerprinting as it is (A) and
replaced by nothing (B), alternated in the same ``python -m bench`` run; and, inside each
A run, the time spent fingerprinting (the code digests at the call, the record written
with the run) against the whole run's, CPU and wall: a share that the runs' noise does
not hide.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from bench import scen_steps, scen_waits
from bench.common import peak_rss_mb

T = TypeVar("T")


def one(i: int) -> int:
    return 1


def total(*values: int) -> int:
    return sum(values)


def evkit_plan(n: int) -> dict[str, float]:
    from evkit import codec, workflow
    from evkit.dag import flatten
    from evkit.execution.plan import make_plan
    from evkit.execution.prints import dag_codes, encode_codes, live_and_stored_prints

    one_step, total_step = workflow.step(one), workflow.step(total)
    stored = flatten(total_step.step(*[one_step.step(i) for i in range(n)]))
    dag_blob, record = codec.dumps(stored), encode_codes(dag_codes(stored))  # what the store holds
    done = {step.step_id for step in stored.steps}
    del stored
    edited = [one_step.step(i) for i in range(n)]
    edited[-1] = one_step.step(-1)
    dag = flatten(total_step.step(*edited))
    loading = [0.0]

    def load_stored_dag() -> object:
        began = time.perf_counter()
        loaded = codec.loads(dag_blob)
        loading[0] = time.perf_counter() - began
        return loaded

    start, cpu = time.perf_counter(), time.process_time()
    prints, stored_prints = live_and_stored_prints(dag, dag_codes(dag), record, load_stored_dag)  # type: ignore[arg-type]
    plan = make_plan(
        workflow_id="w",
        dag=dag,
        prints=prints,
        stored_prints=stored_prints,
        checkpointed=done,
        started=done,
        generations={},
        revision=1,
    )
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(plan.reused) == n - 1, plan.summary()
    assert len(plan.rerun) == 2, plan.summary()
    return {
        "compare_s": elapsed,
        "cpu_s": cpu,
        "load_dag_s": loading[0],
        "record_bytes": len(record),
        "steps": len(dag.steps),
        "rss_mb": peak_rss_mb(),
    }


def floor_plan(n: int) -> dict[str, float]:
    old = {f"one_{i}": f"{i:032x}" for i in range(n)}
    new = dict(old)
    new[f"one_{n - 1}"] = "f" * 32
    start = time.perf_counter()
    changed = [step_id for step_id, digest in new.items() if old.get(step_id) != digest]
    elapsed = time.perf_counter() - start
    assert len(changed) == 1
    return {"compare_s": elapsed, "steps": n + 1, "rss_mb": peak_rss_mb()}


# ------------------------------------------------------------------ a first run, A and B


def _timed_fingerprinting() -> Callable[[], dict[str, float]]:
    # A side: fingerprinting as it is, each call timed. The code digests are taken in the
    # user's thread at the call, the record is encoded on the engine's loop: each is timed
    # with its own thread's CPU clock. The timed run is the last to call each (the chain
    # scenario does a warm-up run first).
    import evkit.api
    import evkit.execution.definitions

    calls: dict[str, list[tuple[float, float]]] = {"dag_codes": [], "encode_codes": []}

    def timed(name: str, function: Callable[..., T]) -> Callable[..., T]:
        def wrapper(*args: object) -> T:
            start, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args)
            finally:
                calls[name].append((time.perf_counter() - start, time.thread_time() - cpu))

        return wrapper

    evkit.api.dag_codes = timed("dag_codes", evkit.api.dag_codes)  # type: ignore[assignment]
    definitions = evkit.execution.definitions
    definitions.encode_codes = timed("encode_codes", definitions.encode_codes)  # type: ignore[assignment]

    def spent() -> dict[str, float]:
        last = [timings[-1] for timings in calls.values()]
        return {"fingerprint_s": sum(t[0] for t in last), "fingerprint_cpu_s": sum(t[1] for t in last)}

    return spent


def _without_fingerprints() -> None:
    # B side: a run starts with no code to digest, and stores an empty record.
    import evkit.api
    from evkit.execution.prints import DagCodes

    evkit.api.dag_codes = lambda dag: DagCodes(codes=())  # type: ignore[assignment]


def waits_with_fingerprints(n: int, kind: str, delay: float) -> dict[str, float]:
    spent = _timed_fingerprinting()
    return {**scen_waits.evkit_waits(n, kind, delay), **spent()}


def waits_without_fingerprints(n: int, kind: str, delay: float) -> dict[str, float]:
    _without_fingerprints()
    return scen_waits.evkit_waits(n, kind, delay)


def steps_with_fingerprints(n: int, shape: str) -> dict[str, float]:
    spent = _timed_fingerprinting()
    return {**scen_steps.evkit_steps(n, shape), **spent()}


def steps_without_fingerprints(n: int, shape: str) -> dict[str, float]:
    _without_fingerprints()
    return scen_steps.evkit_steps(n, shape)
