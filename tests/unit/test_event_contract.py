"""The event contract, driven step by step: a fake write queue the test makes durable, a fake clock.

No store and no real time: each test decides when the checkpoint becomes durable and when
the clock moves, and checks what the listener saw and which records were queued, in order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import cast

import pytest

from evkit import codec
from evkit.clock import FakeClock
from evkit.context import get_event_context
from evkit.dag import FlatDag, flatten, wait_for_event
from evkit.errors import EventTimeoutError, StepFailedError
from evkit.execution.events import TIMEOUT_DEFAULT_SOURCE, EventSteps
from evkit.execution.scope import RunScope
from evkit.execution.tracker import RunTracker
from evkit.listeners.base import EventListener, WaitDescription
from evkit.store import WriteQueue
from evkit.store.reads import StoredEvent
from evkit.store.rows import EventCheckpointRecord, EventCommitRecord, EventStateRecord, Record

LOG: list[str] = []
ARRIVED: asyncio.Event | None = None


class Source(EventListener):
    """Polls until the test says the event arrived; logs every hook the engine calls."""

    async def poll_for_event(self, name: str) -> str:  # type: ignore[override]
        LOG.append(f"poll {name}")
        assert ARRIVED is not None
        await ARRIVED.wait()
        return f"event for {name}"

    async def event_checkpointed(self, event: object) -> None:
        LOG.append(f"commit {event}")

    def source_id(self, event: object) -> str | None:
        return f"src:{event}"

    async def poll_cancelled(self, name: str) -> None:  # type: ignore[override]
        LOG.append(f"cleanup {name}")


class Scheduled(EventListener):
    """Fires 60 s after its wait first started; the deadline comes from the engine."""

    @classmethod
    def describe_wait(
        cls, args: tuple[object, ...], kwargs: Mapping[str, object], *, now: float
    ) -> WaitDescription:
        return WaitDescription(deadline=now + 60)

    async def poll_for_event(self) -> float:  # type: ignore[override]
        deadline = get_event_context().deadline
        assert deadline is not None
        await get_event_context().clock.sleep_until(deadline)
        return deadline


class Broken(EventListener):
    async def poll_for_event(self) -> str:  # type: ignore[override]
        raise ConnectionError("source down")


class FakeQueue:
    """Records appended records; each append's future resolves when the test says so."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.pending: list[asyncio.Future[None]] = []

    def append(self, record: Record) -> asyncio.Future[None]:
        self.records.append(record)
        durable = asyncio.get_running_loop().create_future()
        self.pending.append(durable)
        return durable

    def make_durable(self) -> None:
        for future in self.pending:
            if not future.done():
                future.set_result(None)
        self.pending.clear()

    def kinds(self) -> list[str]:
        return [
            f"{type(r).__name__}:{getattr(r, 'state', 'checkpoint')}"
            if not isinstance(r, EventCheckpointRecord)
            else "checkpoint"
            for r in self.records
        ]


@pytest.fixture(autouse=True)
def fresh_log() -> None:
    global ARRIVED
    LOG.clear()
    ARRIVED = asyncio.Event()


def make_steps(node: object, clock: FakeClock) -> tuple[EventSteps, FakeQueue, RunTracker, FlatDag]:
    dag = flatten(node)  # type: ignore[arg-type]
    tracker = RunTracker("w", {})
    tracker.add_steps(dag, {}, {})
    queue = FakeQueue()
    scope = RunScope(
        workflow_id="w", queue=cast("WriteQueue", queue), clock=clock, tracker=tracker, services={}
    )
    return EventSteps(scope), queue, tracker, dag


async def until(condition: object, *, rounds: int = 100) -> None:
    """Let the loop run until ``condition()`` holds (a bounded number of iterations)."""
    for _ in range(rounds):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def test_the_event_is_committed_at_its_source_only_once_its_checkpoint_is_durable() -> None:
    steps, queue, tracker, dag = make_steps(wait_for_event(Source, "a"), FakeClock())
    step = dag.steps[0]
    run = asyncio.ensure_future(steps.run(step, ("a",), {}, None))
    await until(lambda: LOG == ["poll a"])
    assert tracker.views[step.step_id].state == "waiting"
    assert ARRIVED is not None
    ARRIVED.set()
    await until(lambda: "checkpoint" in queue.kinds())
    for _ in range(10):  # however long the store takes, nothing is committed meanwhile
        await asyncio.sleep(0)
    assert LOG == ["poll a"]
    assert tracker.views[step.step_id].state == "received"
    queue.make_durable()
    assert await run == "event for a"
    assert LOG == ["poll a", "commit event for a"]
    assert queue.kinds() == ["EventStateRecord:waiting", "checkpoint", "EventCommitRecord:committed"]
    checkpoint = queue.records[1]
    assert isinstance(checkpoint, EventCheckpointRecord)
    assert (checkpoint.source_id, codec.loads(checkpoint.payload_blob)) == ("src:event for a", "event for a")
    assert tracker.views[step.step_id].state == "committed"


async def test_a_checkpointed_event_is_never_polled_again_and_its_missing_commit_is_made() -> None:
    steps, queue, _, dag = make_steps(wait_for_event(Source, "a"), FakeClock())
    stored = StoredEvent(poll_attempts=1, payload_blob=codec.dumps("stored event"), source_id="src:1")
    assert await steps.finish_stored(dag.steps[0], stored) == "stored event"
    assert LOG == ["commit stored event"]
    assert queue.kinds() == ["EventCommitRecord:committed"]


async def test_a_committed_event_is_neither_polled_nor_committed_again() -> None:
    steps, queue, _, dag = make_steps(wait_for_event(Source, "a"), FakeClock())
    stored = StoredEvent(poll_attempts=1, payload_blob=codec.dumps("stored event"), committed=True)
    assert await steps.finish_stored(dag.steps[0], stored) == "stored event"
    assert LOG == []
    assert queue.records == []


async def test_a_timeout_with_a_default_checkpoints_the_default_and_commits_nothing_at_the_source() -> None:
    clock = FakeClock()
    node = wait_for_event(Source, "a", timeout_seconds=60, default="fallback")
    steps, queue, _, dag = make_steps(node, clock)
    run = asyncio.ensure_future(steps.run(dag.steps[0], ("a",), {}, None))
    await clock.wait_for_sleepers_async(1)
    clock.advance(60)
    await until(lambda: "checkpoint" in queue.kinds())
    queue.make_durable()
    assert await run == "fallback"
    checkpoint = queue.records[1]
    assert isinstance(checkpoint, EventCheckpointRecord)
    assert checkpoint.source_id == TIMEOUT_DEFAULT_SOURCE
    # The timeout cancelled the poll, so its cleanup ran; no commit of an event that never came.
    assert LOG == ["poll a", "cleanup a"]


async def test_a_timeout_without_a_default_fails_the_step() -> None:
    clock = FakeClock()
    steps, queue, tracker, dag = make_steps(wait_for_event(Source, "a", timeout_seconds=5), clock)
    step = dag.steps[0]
    run = asyncio.ensure_future(steps.run(step, ("a",), {}, None))
    await clock.wait_for_sleepers_async(1)
    clock.advance(5)
    with pytest.raises(
        EventTimeoutError, match=r"^Event step '.*' of run 'w' got no event within timeout_seconds=5"
    ):
        await run
    assert queue.kinds() == ["EventStateRecord:waiting", "EventStateRecord:failed"]
    assert tracker.views[step.step_id].state == "failed"


async def test_the_timeout_deadline_is_kept_from_the_first_wait_on_resume() -> None:
    clock = FakeClock()
    steps, queue, tracker, dag = make_steps(wait_for_event(Source, "a", timeout_seconds=60), clock)
    step = dag.steps[0]
    first_deadline = clock.now() - 10  # stored by a wait that started 70 s ago
    stored = StoredEvent(poll_attempts=1, timeout_at=dt.datetime.fromtimestamp(first_deadline, tz=dt.UTC))
    with pytest.raises(EventTimeoutError):
        await steps.run(step, ("a",), {}, stored)  # already past: no clock advance needed
    waiting = queue.records[0]
    assert isinstance(waiting, EventStateRecord)
    assert waiting.timeout_at == first_deadline
    assert tracker.views[step.step_id].attempts == 1


async def test_cancelling_a_wait_runs_the_listeners_cleanup_and_records_it() -> None:
    steps, queue, tracker, dag = make_steps(wait_for_event(Source, "a"), FakeClock())
    step = dag.steps[0]
    run = asyncio.ensure_future(steps.run(step, ("a",), {}, None))
    await until(lambda: LOG == ["poll a"])
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert LOG == ["poll a", "cleanup a"]
    assert queue.kinds() == ["EventStateRecord:waiting", "EventStateRecord:cancelled"]
    assert tracker.views[step.step_id].state == "cancelled"


async def test_a_failing_poll_fails_the_step_with_the_listener_named() -> None:
    steps, queue, _, dag = make_steps(wait_for_event(Broken), FakeClock())
    step = dag.steps[0]
    with pytest.raises(
        StepFailedError, match=r"^Listener Broken of event step '.*' in run 'w' raised ConnectionError"
    ):
        await steps.run(step, (), {}, None)
    failed = queue.records[-1]
    assert isinstance(failed, EventStateRecord)
    assert (failed.state, failed.error_text) == ("failed", "ConnectionError: source down")
    assert not any(isinstance(r, EventCommitRecord | EventCheckpointRecord) for r in queue.records)


async def test_a_deadline_is_fixed_when_the_wait_first_starts_and_kept_on_resume() -> None:
    clock = FakeClock()
    steps, queue, _, dag = make_steps(wait_for_event(Scheduled), clock)
    step = dag.steps[0]
    first = asyncio.ensure_future(steps.run(step, (), {}, None))
    await clock.wait_for_sleepers_async(1)
    waiting = queue.records[0]
    assert isinstance(waiting, EventStateRecord)
    assert waiting.deadline == clock.now() + 60
    first.cancel()  # a crash, as far as the wait is concerned
    with pytest.raises(asyncio.CancelledError):
        await first
    clock.advance(45)  # the process was down for 45 s
    stored = StoredEvent(poll_attempts=1, deadline=dt.datetime.fromtimestamp(waiting.deadline, tz=dt.UTC))
    steps, queue, _, dag = make_steps(wait_for_event(Scheduled), clock)
    again = asyncio.ensure_future(steps.run(dag.steps[0], (), {}, stored))
    await clock.wait_for_sleepers_async(1)
    clock.advance(15)  # only what was left
    await until(lambda: "checkpoint" in queue.kinds())
    queue.make_durable()
    assert await again == waiting.deadline
