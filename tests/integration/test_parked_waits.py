"""Parked waits: a manual or timer wait holds no task until its event may be there.

The wait is stored and shown as waiting from the start; its step's task starts when the
inbox has an event for its key (or the clock reaches the timer's deadline); a cancelled
parked wait is recorded as cancelled and leaves nothing behind in the inbox or the loop.
A listener with a poll of its own is polled from the start, as written.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar, NoReturn

import pytest

import evkit
from evkit import workflow
from evkit.clock import WallClock
from evkit.engine import Engine


@workflow.step
def double(value: int) -> int:
    return value * 2


@workflow.step
def collect(*values: object) -> list[object]:
    return list(values)


class OwnPollListener(workflow.ManualListener):
    """A manual listener with a poll of its own: it notes when it is polled."""

    polled: ClassVar[list[str]] = []

    async def poll_for_event(self, key: str) -> object:  # type: ignore[override]
        OwnPollListener.polled.append(key)
        return await super().poll_for_event(key)


def step_tasks(workflow_id: str) -> list[str]:
    """Names of the loop's tasks that run steps of ``workflow_id``."""
    return sorted(
        t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(f"evkit:{workflow_id}:")
    )


async def event_states(workflow_id: str) -> list[tuple[object, ...]]:
    """(step, state) of the run's event rows, as another thread reads them (committed)."""
    sql = (
        "SELECT step_id, state FROM event_log "
        f"WHERE workflow_id = '{workflow_id}' ORDER BY step_id, recorded_at"
    )
    return await asyncio.to_thread(lambda: evkit.sql(sql).fetchall())


async def flushed(engine: Engine) -> None:
    await engine.queue.flush()


async def test_a_manual_wait_holds_no_task_until_its_event_is_sent(aruntime: evkit.Runtime) -> None:
    engine = aruntime.engine()
    waits = [workflow.wait_for_event(workflow.ManualListener, f"k{i}", name=f"wait{i}") for i in range(3)]
    handle = workflow.run_async(collect.step(*[double.step(w) for w in waits]), workflow_id="parked")
    await handle.wait_waiting(timeout_seconds=10)
    # Only the fan-in's task: each wait and the step it feeds are parked.
    assert step_tasks("parked") == ["evkit:parked:collect"]
    snapshot = handle.snapshot()
    assert snapshot.status is workflow.WorkflowStatus.WAITING
    assert {s.step_id: s.state for s in snapshot.steps if s.step_id.startswith("wait")} == {
        "wait0": "waiting",
        "wait1": "waiting",
        "wait2": "waiting",
    }
    await flushed(engine)
    assert [state for _, state in await event_states("parked")] == ["waiting"] * 3

    await engine.inbox.send("parked", "k1", 21)
    await engine.inbox.send("parked", "k0", 1)
    await engine.inbox.send("parked", "k2", 2)
    assert await handle == [2, 42, 4]
    states = await event_states("parked")
    assert states == [
        (f"wait{i}", state) for i in range(3) for state in ("waiting", "checkpointed", "committed")
    ]


async def test_an_event_sent_before_the_wait_starts_is_taken_at_once(aruntime: evkit.Runtime) -> None:
    engine = aruntime.engine()
    await engine.inbox.send("early", "k", 5)
    assert (
        await workflow.run_async(
            double.step(workflow.wait_for_event(workflow.ManualListener, "k")), workflow_id="early"
        )
        == 10
    )


async def test_cancelling_parked_waits_records_them_cancelled_and_leaves_no_waiter(
    aruntime: evkit.Runtime,
) -> None:
    engine = aruntime.engine()
    waits = [workflow.wait_for_event(workflow.ManualListener, f"k{i}", name=f"wait{i}") for i in range(3)]
    handle = workflow.run_async(collect.step(*[double.step(w) for w in waits]), workflow_id="cancel-parked")
    await handle.wait_waiting(timeout_seconds=10)
    assert await handle.cancel_async() is workflow.WorkflowStatus.CANCELED
    await flushed(engine)
    assert [state for _, state in await event_states("cancel-parked")] == ["waiting", "cancelled"] * 3
    assert not [where for where in engine.inbox._waiters if where[0] == "cancel-parked"]
    assert step_tasks("cancel-parked") == []
    # The keys stay usable: a later run on them gets its events.
    await engine.inbox.send("again", "k0", 4)
    again = workflow.wait_for_event(workflow.ManualListener, "k0")
    assert await workflow.run_async(double.step(again), workflow_id="again") == 8


async def test_parked_timers_fire_on_the_fake_clock_and_count_as_its_sleepers(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    deadline = fake_clock.now() + 60
    waits = [workflow.wait_for_event(workflow.TimerListener, deadline + i) for i in range(3)]
    handle = workflow.run_async(collect.step(*waits), workflow_id="timers")
    await handle.wait_waiting(timeout_seconds=10)
    assert step_tasks("timers") == ["evkit:timers:collect"]
    await fake_clock.wait_for_sleepers_async(3)  # the parked timers' alarms
    fake_clock.advance(63)
    assert await handle == [None, None, None]


async def test_a_listener_with_its_own_poll_is_polled_from_the_start(aruntime: evkit.Runtime) -> None:
    engine = aruntime.engine()
    OwnPollListener.polled.clear()
    handle = workflow.run_async(
        double.step(workflow.wait_for_event(OwnPollListener, "own")), workflow_id="own"
    )
    await handle.wait_waiting(timeout_seconds=10)
    assert OwnPollListener.polled == ["own"]  # before any event was sent
    assert step_tasks("own") == ["evkit:own:double"]
    await engine.inbox.send("own", "own", 3)
    assert await handle == 6


async def test_a_cancelled_wall_clock_alarm_cancels_its_timer() -> None:
    loop = asyncio.get_running_loop()
    alarm = WallClock().alarm(loop.time() + 3600 + 1e9)  # far away, in wall-clock seconds
    handle = alarm.handle  # type: ignore[attr-defined]
    assert not handle.cancelled()
    alarm.cancel()
    assert handle.cancelled()
    fired = WallClock().alarm(0)  # past: resolves on the next loop turn
    await asyncio.wait_for(fired, timeout=5)


class FailingDescription(workflow.ManualListener):
    """Its description fails (a subclass's mistake); its poll is the built-in one."""

    @classmethod
    def describe_wait(cls, args: object, kwargs: object, *, now: float) -> NoReturn:  # type: ignore[override]
        raise ValueError("no description")


async def test_a_wait_whose_description_fails_fails_its_run_as_an_unparked_one(
    aruntime: evkit.Runtime,
) -> None:
    waits = [workflow.wait_for_event(FailingDescription, "k"), workflow.wait_for_event(OwnPollListener, "j")]
    handle = workflow.run_async(collect.step(*waits), workflow_id="no-description")
    with pytest.raises(evkit.StepFailedError) as failed:
        await handle
    assert isinstance(failed.value.__cause__, ValueError)
    assert str(failed.value.__cause__) == "no description"
    assert handle.status is workflow.WorkflowStatus.FAILED
