"""The scheduler's fan-in (_all_results): asyncio.gather's outcome, one callback context."""

from __future__ import annotations

import asyncio
import contextvars
import gc

import pytest

from evkit.execution.run import _all_results


def contexts_alive() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is contextvars.Context)


async def value_after(gate: asyncio.Event, value: object) -> object:
    await gate.wait()
    if isinstance(value, BaseException):
        raise value
    return value


def test_results_come_in_the_tasks_order_whatever_order_they_end_in() -> None:
    async def main() -> list[object]:
        gates = [asyncio.Event() for _ in range(3)]
        tasks = [asyncio.create_task(value_after(g, i)) for i, g in enumerate(gates)]
        outcome = _all_results(tasks)
        for gate in reversed(gates):
            gate.set()
            await asyncio.sleep(0)
        return await outcome

    assert asyncio.run(main()) == [0, 1, 2]


def test_the_first_failure_is_the_outcome_and_the_others_are_retrieved() -> None:
    loop = asyncio.new_event_loop()
    errors: list[object] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))

    async def run() -> None:
        gate = asyncio.Event()
        tasks = [
            asyncio.create_task(value_after(gate, ValueError("first"))),
            asyncio.create_task(value_after(gate, KeyError("second"))),
        ]
        outcome = _all_results(tasks)
        gate.set()
        with pytest.raises(ValueError, match="first"):
            await outcome
        await asyncio.sleep(0)
        del tasks, outcome

    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    gc.collect()
    assert errors == []  # no "exception was never retrieved"


def test_a_cancelled_task_fails_the_outcome_and_cancelling_the_outcome_cancels_the_tasks() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(value_after(gate, i)) for i in range(2)]
        await asyncio.sleep(0)
        tasks[0].cancel()
        with pytest.raises(asyncio.CancelledError):
            await _all_results(tasks)
        others = [asyncio.create_task(value_after(gate, i)) for i in range(2)]
        outcome = _all_results(others)
        await asyncio.sleep(0)
        outcome.cancel()
        await asyncio.wait(others, timeout=5)
        assert all(task.cancelled() for task in others)

    asyncio.run(main())


def test_the_tasks_share_one_callback_context() -> None:
    async def main() -> int:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(value_after(gate, i)) for i in range(200)]
        before = contexts_alive()
        outcome = _all_results(tasks)
        added = contexts_alive() - before  # asyncio.gather copies a context per task
        gate.set()
        assert await outcome == list(range(200))
        return added

    assert asyncio.run(main()) <= 1
