"""A failed run raises the same error live and when its output is read back from the store."""

from __future__ import annotations

import asyncio
import threading

import pytest

import evkit
from evkit import workflow


class LockedError(Exception):
    """An exception that cannot be pickled (it holds a lock), so the store cannot keep it."""

    def __init__(self) -> None:
        super().__init__("locked")
        self.lock = threading.Lock()


@workflow.step
def explode(kind: str) -> int:
    if kind == "locked":
        raise LockedError
    raise ValueError(f"bad {kind}")


def _fields(error: BaseException) -> tuple[object, ...]:
    return (type(error), str(error), error.__dict__)


@pytest.mark.slow
def test_a_failed_step_is_the_same_step_failed_error_live_and_from_the_store(
    runtime: evkit.Runtime, store_path: str
) -> None:
    with pytest.raises(workflow.WorkflowExecutionError) as live:
        explode.step("input").run(workflow_id="boom")
    assert _fields(live.value) == (
        evkit.StepFailedError,
        "Step 'explode' of run 'boom' failed after 1 attempt(s): ValueError('bad input')",
        {"workflow_id": "boom", "step": "explode"},
    )

    with pytest.raises(evkit.StepFailedError) as stored:
        workflow.get_output("boom")
    assert _fields(stored.value) == _fields(live.value)
    assert type(stored.value.__cause__) is ValueError
    assert stored.value.__cause__.args == ("bad input",)

    # A new runtime knows the run only from the file.
    workflow.shutdown()
    workflow.init(storage=store_path, loop="thread")
    with pytest.raises(evkit.StepFailedError) as reopened:
        workflow.get_output("boom")
    assert _fields(reopened.value) == _fields(live.value)
    assert type(reopened.value.__cause__) is ValueError


def test_a_cause_that_cannot_be_stored_loses_only_itself(runtime: evkit.Runtime) -> None:
    with pytest.raises(evkit.StepFailedError) as live:
        explode.step("locked").run(workflow_id="locked")
    assert type(live.value.__cause__) is LockedError

    with pytest.raises(evkit.StepFailedError) as stored:
        workflow.get_output("locked")
    assert _fields(stored.value) == _fields(live.value)
    assert stored.value.step == "explode"
    assert stored.value.__cause__ is None


async def test_an_event_timeout_fails_the_run_naming_its_step_live_and_from_the_store(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    handle = workflow.run_async(
        workflow.wait_for_event(workflow.ManualListener, key="never", timeout_seconds=30), workflow_id="late"
    )
    await fake_clock.wait_for_sleepers_async(1)
    fake_clock.advance(30)
    with pytest.raises(evkit.StepFailedError) as live:
        await handle
    assert live.value.__dict__ == {"workflow_id": "late", "step": "ManualListener"}
    assert type(live.value.__cause__) is evkit.EventTimeoutError

    with pytest.raises(evkit.StepFailedError) as stored:
        await asyncio.to_thread(workflow.get_output, "late")
    assert _fields(stored.value) == _fields(live.value)
    assert type(stored.value.__cause__) is evkit.EventTimeoutError
    assert stored.value.__cause__.__dict__ == {
        "workflow_id": "late",
        "step": "ManualListener",
        "timeout_seconds": 30,
    }
