"""A big run leaves the process's GC settings as the user had them, except inside a call
the user made that returns: a blocking wait for the run's result."""

from __future__ import annotations

import gc
import threading

import pytest

import evkit
from evkit import workflow
from evkit.gcscope import BIG_RUN_STEPS

SEEN: list[tuple[int, int, int]] = []
STEP_RAN = threading.Event()


@workflow.step
def one(i: int) -> int:
    return i


def record_threshold() -> tuple[int, int, int]:
    # A plain module function: pickled by reference with the run's DAG, so the lock in
    # STEP_RAN is never pickled (the step function itself is pickled by value).
    SEEN.append(gc.get_threshold())
    STEP_RAN.set()
    return SEEN[-1]


@workflow.step
def gc_threshold_now(*values: object) -> tuple[int, int, int]:
    return record_threshold()


@pytest.fixture(autouse=True)
def fresh_signals() -> None:
    SEEN.clear()
    STEP_RAN.clear()


@pytest.mark.slow  # 5,001 steps
def test_a_big_run_nobody_waits_for_keeps_the_users_gc_thresholds(runtime: evkit.Runtime) -> None:
    before = gc.get_threshold()
    handle = workflow.run_async(
        gc_threshold_now.step(*[one.step(i) for i in range(BIG_RUN_STEPS)]), workflow_id="big"
    )
    # Not checked right after run_async: the engine's thread may be building the run's
    # bookkeeping then, a synchronous section that raises the threshold while it lasts.
    assert STEP_RAN.wait(60)
    assert [before] == SEEN, "a step of the big run saw the GC thresholds changed"
    handle.result(timeout=60)
    assert gc.get_threshold() == before


@pytest.mark.slow  # 5,001 steps
def test_a_blocking_wait_for_a_big_run_has_fewer_gc_passes_until_it_returns(runtime: evkit.Runtime) -> None:
    before = gc.get_threshold()
    handle = workflow.run_async(
        gc_threshold_now.step(*[one.step(i) for i in range(BIG_RUN_STEPS)]), workflow_id="big"
    )
    during = handle.result(timeout=60)
    assert during[0] > before[0], "the run worked inside result() with the user's thresholds"
    assert gc.get_threshold() == before


def test_a_blocking_wait_for_a_small_run_keeps_the_users_gc_thresholds(runtime: evkit.Runtime) -> None:
    before = gc.get_threshold()
    handle = workflow.run_async(gc_threshold_now.step(*[one.step(i) for i in range(3)]), workflow_id="small")
    assert handle.result(timeout=60) == before
