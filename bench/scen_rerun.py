"""Scenario 10: re-runs. Deciding what a re-run reuses, and what fingerprinting costs.

Plan: a 100,000-step fan-in ``total(one(0), ..., one(n-1))`` was run (its fingerprints
are what the store keeps, as a blob); the user changes one literal and runs it again.
Measured: fingerprinting the new DAG, unpickling the stored fingerprints and deciding
step by step what to reuse (``make_plan``). The floor compares two precomputed dicts
of digests. Loading the run's checkpoints is the resume's cost (scenario 5).

A/B: the 100,000-wait and chain scenarios with fingerprinting as it is (A) and
replaced by nothing (B), in the same ``python -m bench`` run.
"""

from __future__ import annotations

import time

from bench import scen_steps, scen_waits
from bench.common import peak_rss_mb


def one(i: int) -> int:
    return 1


def total(*values: int) -> int:
    return sum(values)


def evkit_plan(n: int) -> dict[str, float]:
    from evkit import codec, workflow
    from evkit.dag import flatten
    from evkit.execution.plan import fingerprint_dag, make_plan

    one_step, total_step = workflow.step(one), workflow.step(total)
    stored = flatten(total_step.step(*[one_step.step(i) for i in range(n)]))
    blob = codec.dumps(fingerprint_dag(stored))  # what the store holds for the run
    done = {step.step_id for step in stored.steps}
    edited = [one_step.step(i) for i in range(n)]
    edited[-1] = one_step.step(-1)
    dag = flatten(total_step.step(*edited))
    start, cpu = time.perf_counter(), time.process_time()
    plan = make_plan(
        workflow_id="w",
        dag=dag,
        prints=fingerprint_dag(dag),
        stored_prints=codec.loads(blob),
        checkpointed=done,
        started=done,
        generations={},
        revision=1,
    )
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(plan.reused) == n - 1, plan.summary()
    assert len(plan.rerun) == 2, plan.summary()
    return {"compare_s": elapsed, "cpu_s": cpu, "steps": len(dag.steps), "rss_mb": peak_rss_mb()}


def floor_plan(n: int) -> dict[str, float]:
    old = {f"one_{i}": f"{i:032x}" for i in range(n)}
    new = dict(old)
    new[f"one_{n - 1}"] = "f" * 32
    start = time.perf_counter()
    changed = [step_id for step_id, digest in new.items() if old.get(step_id) != digest]
    elapsed = time.perf_counter() - start
    assert len(changed) == 1
    return {"compare_s": elapsed, "steps": n + 1, "rss_mb": peak_rss_mb()}


def _without_fingerprints() -> None:
    # B side: a run starts with no fingerprints to compute or store.
    import evkit.api

    evkit.api.fingerprint_dag = lambda dag: {}  # type: ignore[assignment]


def waits_without_fingerprints(n: int, kind: str, delay: float) -> dict[str, float]:
    _without_fingerprints()
    return scen_waits.evkit_waits(n, kind, delay)


def steps_without_fingerprints(n: int, shape: str) -> dict[str, float]:
    _without_fingerprints()
    return scen_steps.evkit_steps(n, shape)
