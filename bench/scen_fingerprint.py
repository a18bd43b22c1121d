"""Scenario 11: what fingerprinting a DAG's steps costs, beside flattening the same DAG.

A re-run fingerprints every step of the DAG it is given (its code, its literal arguments,
its upstream steps' fingerprints) to compare them with the stored run. Two shapes: a
fan-out of N calls of one function into a ``total`` step (one function, fingerprinted
once), and a chain of 1,000 distinct functions (each fingerprinted, each calling a
shared helper). The baseline is ``flatten``, the work every run already does on its DAG.
Times are the median of a few repeats in one process; "cold" is the first fingerprint of
each function in the process, "warm" a second pass (the per-object cache checks that the
names each function uses still hold the same objects).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bench.common import peak_rss_mb

if TYPE_CHECKING:
    from evkit.dag import FlatDag
    from evkit.fingerprint import Fingerprinter

REPEATS = 3


def one(i: int) -> int:
    return 1


def total(*values: int) -> int:
    return sum(values)


_CHAIN_SOURCE = """
def helper(x):
    return x + 1

def link_{i}(x):
    return helper(x) + {i}
"""


def _chain_functions(n: int) -> list[Callable[[int], int]]:
    # Distinct functions, as cells of a notebook would define them: one namespace, each
    # function its own code object and its own constant.
    namespace: dict[str, object] = {"__name__": "__main__"}
    for i in range(n):
        exec(compile(_CHAIN_SOURCE.format(i=i), f"<cell {i}>", "exec"), namespace)
    return [namespace[f"link_{i}"] for i in range(n)]  # type: ignore[misc]


def dag_fingerprints(flat: FlatDag, fingerprinter: Fingerprinter) -> dict[str, str]:
    """Each step's fingerprint: its code digest, its literal arguments' digests and its
    upstream steps' fingerprints, combined (the comparison a re-run makes)."""
    from evkit.dag import Ref
    from evkit.fingerprint import combine, value_fingerprint

    prints: dict[str, str] = {}

    def upstream(value: object) -> str | None:  # a Ref nested in an argument
        return prints[value.step_id] if type(value) is Ref else None

    for step in flat.steps:
        code = fingerprinter.code(step.func if step.listener is None else step.listener)  # type: ignore[arg-type]
        parts = [code]
        for value in (*step.args, *step.kwargs.items()):
            if type(value) is Ref:
                parts.append(prints[value.step_id])
            else:
                parts.append(value_fingerprint(value, substitute=upstream))
        prints[step.step_id] = combine(parts)
    return prints


def _median_seconds(action: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fingerprint_fanout(n: int) -> dict[str, float]:
    from evkit import fingerprint, workflow
    from evkit.dag import flatten

    one_step, total_step = workflow.step(one), workflow.step(total)
    node = total_step.step(*[one_step.step(i) for i in range(n)])
    flat = flatten(node)
    flatten_s = _median_seconds(lambda: flatten(node))
    fingerprint._CACHE.clear()
    start = time.perf_counter()
    first = dag_fingerprints(flat, fingerprint.Fingerprinter())
    cold_s = time.perf_counter() - start
    warm_s = _median_seconds(lambda: dag_fingerprints(flat, fingerprint.Fingerprinter()))
    # Without a Fingerprinter: function_fingerprint per step, each checking its cache entry.
    per_call_s = _median_seconds(lambda: [fingerprint.function_fingerprint(s.func) for s in flat.steps])  # type: ignore[arg-type]
    assert len(first) == n + 1
    return {
        "flatten_s": flatten_s,
        "fingerprint_cold_s": cold_s,
        "fingerprint_s": warm_s,
        "function_fingerprint_per_step_s": per_call_s,
        "rss_mb": peak_rss_mb(),
    }


def fingerprint_chain(n: int) -> dict[str, float]:
    from evkit import fingerprint, workflow
    from evkit.dag import flatten

    functions = [workflow.step(f) for f in _chain_functions(n)]
    node = functions[0].step(0)
    for function in functions[1:]:
        node = function.step(node)
    flat = flatten(node)
    flatten_s = _median_seconds(lambda: flatten(node))
    fingerprint._CACHE.clear()
    start = time.perf_counter()
    first = dag_fingerprints(flat, fingerprint.Fingerprinter())
    cold_s = time.perf_counter() - start
    warm_s = _median_seconds(lambda: dag_fingerprints(flat, fingerprint.Fingerprinter()))
    assert len(first) == n
    return {
        "flatten_s": flatten_s,
        "fingerprint_cold_s": cold_s,
        "fingerprint_s": warm_s,
        "cold_per_function_us": cold_s / n * 1e6,
        "rss_mb": peak_rss_mb(),
    }


def fingerprint_scenario_dags(n_waits: int, n_chain: int) -> dict[str, float]:
    """The DAGs of scenario 1 (manual waits, each feeding a ``handle`` step, collected)
    and of scenario 4 (a chain of one ``add`` function), fingerprinted but not run.

    The chain goes first and each DAG is dropped before the next is built: with the
    waits' 200,000 steps alive, the collector's full passes would be timed too.
    """
    from bench.listeners import CountingManualListener, collect, handle
    from bench.scen_steps import add
    from evkit import fingerprint, workflow
    from evkit.dag import StepNode, flatten

    def chain() -> StepNode:
        add_step = workflow.step(add)
        node = add_step.step(0, 1)
        for _ in range(n_chain - 1):
            node = add_step.step(node, 1)
        return node

    def waits() -> StepNode:
        return collect.step(
            *[handle.step(workflow.wait_for_event(CountingManualListener, f"k{i}")) for i in range(n_waits)]
        )

    result: dict[str, float] = {}
    for label, build in (("chain", chain), ("waits", waits)):
        node = build()
        flat = flatten(node)
        result[f"{label}_steps"] = len(flat.steps)
        result[f"{label}_flatten_s"] = _median_seconds(functools.partial(flatten, node))
        fingerprint._CACHE.clear()
        start = time.perf_counter()
        dag_fingerprints(flat, fingerprint.Fingerprinter())
        result[f"{label}_fingerprint_s"] = time.perf_counter() - start
        del node, flat
    result["rss_mb"] = peak_rss_mb()
    return result
