"""Scenario 11: what fingerprinting a DAG's steps costs, beside flattening the same DAG.

Every run takes its DAG's code digests at the call (``dag_codes``: one digest per distinct
function, a type check per argument); a re-run also derives every step's fingerprint,
for the DAG it is given and for the stored one (``step_prints``). Two shapes: a fan-out
of N calls of one function into a ``total`` step (one function, digested once), and a
chain of 1,000 distinct functions (each digested, each calling a shared helper). The
baseline is ``flatten``, the work every run already does on its DAG. Times are the
median of a few repeats in one process; "cold" is the first digest of each function in
the process, "again" a second pass (the per-object cache checks that the names each
function uses still hold the same objects).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable

from bench.common import peak_rss_mb

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


def _median_seconds(action: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _codes_and_prints(flat: object) -> dict[str, float]:
    # What a first run pays (cold: no function digested yet in the process), again (the
    # cache checked), and one side of a re-run's comparison.
    from evkit import fingerprint
    from evkit.execution.prints import dag_codes, step_prints

    fingerprint._CACHE.clear()
    start = time.perf_counter()
    codes = dag_codes(flat)  # type: ignore[arg-type]
    cold_s = time.perf_counter() - start
    return {
        "codes_cold_s": cold_s,
        "codes_s": _median_seconds(lambda: dag_codes(flat)),  # type: ignore[arg-type]
        "step_prints_s": _median_seconds(lambda: step_prints(flat, codes)),  # type: ignore[arg-type]
    }


def fingerprint_fanout(n: int) -> dict[str, float]:
    from evkit import fingerprint, workflow
    from evkit.dag import flatten

    one_step, total_step = workflow.step(one), workflow.step(total)
    node = total_step.step(*[one_step.step(i) for i in range(n)])
    flat = flatten(node)
    flatten_s = _median_seconds(lambda: flatten(node))
    timings = _codes_and_prints(flat)
    # Without dag_codes: function_fingerprint per step, each checking its cache entry.
    per_call_s = _median_seconds(lambda: [fingerprint.function_fingerprint(s.func) for s in flat.steps])  # type: ignore[arg-type]
    return {
        "flatten_s": flatten_s,
        **timings,
        "function_fingerprint_per_step_s": per_call_s,
        "rss_mb": peak_rss_mb(),
    }


def fingerprint_chain(n: int) -> dict[str, float]:
    from evkit import workflow
    from evkit.dag import flatten

    functions = [workflow.step(f) for f in _chain_functions(n)]
    node = functions[0].step(0)
    for function in functions[1:]:
        node = function.step(node)
    flat = flatten(node)
    flatten_s = _median_seconds(lambda: flatten(node))
    timings = _codes_and_prints(flat)
    return {
        "flatten_s": flatten_s,
        **timings,
        "cold_per_function_us": timings["codes_cold_s"] / n * 1e6,
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
    from evkit import workflow
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
        timings = _codes_and_prints(flat)
        result[f"{label}_codes_s"] = timings["codes_cold_s"]
        result[f"{label}_step_prints_s"] = timings["step_prints_s"]
        del node, flat
    result["rss_mb"] = peak_rss_mb()
    return result
