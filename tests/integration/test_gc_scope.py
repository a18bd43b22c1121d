"""A big run leaves the process's GC settings as the user had them, while it runs too."""

from __future__ import annotations

import gc

import pytest

import evkit
from evkit import workflow

# Runs of this many steps build their DAG and bookkeeping with fewer GC passes.
_BIG = 5_000


@workflow.step
def one(i: int) -> int:
    return i


@workflow.step
def gc_threshold_now(*values: object) -> tuple[int, int, int]:
    return gc.get_threshold()


@pytest.mark.slow  # 5,001 steps
def test_a_big_run_keeps_the_users_gc_thresholds_while_it_runs(runtime: evkit.Runtime) -> None:
    before = gc.get_threshold()
    handle = workflow.run_async(gc_threshold_now.step(*[one.step(i) for i in range(_BIG)]), workflow_id="big")
    # (Not checked right after run_async: the engine's thread may be building the run's
    # bookkeeping then, a synchronous section that raises the threshold while it lasts.)
    during = handle.result(timeout=60)
    assert during == before, "a step of the big run saw the GC thresholds changed"
    assert gc.get_threshold() == before
