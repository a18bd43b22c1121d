"""workflow.wait_for_any on a real loop and a real store: the first event wins and alone is
checkpointed and committed; losers are cancelled with their cleanup hooks, and an event a
loser took goes back to its source; timers, continuations, timeouts and the SQL view."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import aiohttp
import pytest

import evkit
from evkit import workflow
from evkit.serve import serve_events_async


class Recorder:
    """Shared, in-process record of listener calls (listeners themselves are stateless)."""

    calls: ClassVar[list[tuple[str, object]]] = []


@pytest.fixture(autouse=True)
def _clear_recorder() -> None:
    Recorder.calls = []


class ImmediateListener(workflow.EventListener):
    """Returns its argument at once, with a source id; records its commit."""

    async def poll_for_event(self, value: object) -> object:
        Recorder.calls.append(("poll", value))
        return value

    def source_id(self, event: object) -> str | None:
        return f"immediate:{event}"

    async def event_checkpointed(self, event: object) -> None:
        Recorder.calls.append(("commit", event))


class NeverListener(workflow.EventListener):
    """Waits forever; records its cleanup and the deadline its context gave it."""

    async def poll_for_event(self, name: str) -> object:
        Recorder.calls.append(("poll", name))
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def poll_cancelled(self, name: str) -> None:
        Recorder.calls.append(("cleanup", name))

    async def event_checkpointed(self, event: object) -> None:
        raise AssertionError("a loser is never committed")


class BrokenListener(workflow.EventListener):
    async def poll_for_event(self) -> object:
        raise ConnectionError("source unavailable")


@workflow.step
def collect(*values: object) -> tuple[object, ...]:
    return values


@workflow.step
def then_wait(_: object, key: str) -> evkit.StepNode:
    return workflow.wait_for_event(workflow.ManualListener, key)


@workflow.step
def race(_: object) -> evkit.StepNode:
    return workflow.wait_for_any(
        {
            "approve": workflow.wait_for_event(workflow.ManualListener, "approve"),
            "reject": workflow.wait_for_event(workflow.ManualListener, "reject"),
        }
    )


@workflow.step
def key_after(_: object, key: str) -> str:
    return key


async def rows(query: str) -> list[tuple[object, ...]]:
    """Run SQL from a worker thread, as async code should (evkit.sql blocks)."""
    return await asyncio.to_thread(lambda: evkit.sql(query).fetchall())


async def test_the_first_sent_event_wins_and_the_loser_key_keeps_its_event_for_a_later_wait(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    # Inside a continuation that starts once both events are in the inbox: both branches
    # take an event in the same loop iteration, and the loser must give its event back.
    decided = race.step(workflow.sleep(10))
    handle = workflow.run_async(collect.step(decided, then_wait.step(decided, "reject")), workflow_id="w")
    await fake_clock.wait_for_sleepers_async(1)
    engine = aruntime.engine()
    await engine.inbox.send("w", "approve", "yes", event_id="e-approve")
    await engine.inbox.send("w", "reject", "no", event_id="e-reject")
    fake_clock.advance(10)
    assert await handle == (("approve", "yes"), "no")
    assert await rows("SELECT event_id, delivered_to FROM inbox_events ORDER BY event_id") == [
        ("e-approve", "race/any_of"),
        ("e-reject", "then_wait/ManualListener"),
    ]
    assert await rows(
        "SELECT listener, payload, source_id, commits FROM events WHERE step_id = 'race/any_of'"
    ) == [("any of: approve, reject", '["approve", "yes"]', "e-approve", 1)]
    # The query docs/store.md shows.
    assert await rows(
        "SELECT step_id, payload ->> '$[0]' AS winner, payload -> '$[1]' AS event "
        "FROM events WHERE listener LIKE 'any of: %' AND state = 'committed'"
    ) == [("race/any_of", "approve", '"yes"')]


async def test_an_event_sent_to_one_branch_wins_and_the_other_key_keeps_later_events(
    aruntime: evkit.Runtime,
) -> None:
    wait = workflow.wait_for_any(
        {
            "approve": workflow.wait_for_event(workflow.ManualListener, "approve"),
            "reject": workflow.wait_for_event(workflow.ManualListener, "reject"),
        }
    )
    handle = workflow.run_async(collect.step(wait, then_wait.step(wait, "approve")), workflow_id="w")
    await handle.wait_waiting(timeout_seconds=5)
    [step] = [s for s in handle.snapshot().steps if s.step_id == "any_of"]
    assert (step.listener, step.state, step.inbox_key) == ("any of: approve, reject", "waiting", "approve")
    await asyncio.to_thread(workflow.send_event, "w", "reject", "no")
    await handle.wait_waiting(timeout_seconds=5)  # the next wait, on "approve"
    await asyncio.to_thread(workflow.send_event, "w", "approve", "yes")
    assert await handle == (("reject", "no"), "yes")


async def test_a_timer_branch_wins_and_its_deadline_is_fixed_when_the_wait_starts(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    start = fake_clock.now()
    # The branch's key comes from a step that finishes 100 s in: the wait starts then, and
    # its 10 s sleep branch counts from there, not from when the run started.
    key = key_after.step(workflow.sleep(100), "approve")
    wait = workflow.wait_for_any(
        {"approve": workflow.wait_for_event(workflow.ManualListener, key), "expired": workflow.sleep(10)}
    )
    handle = workflow.run_async(wait, workflow_id="w")
    await fake_clock.wait_for_sleepers_async(1)
    fake_clock.advance(100)
    await fake_clock.wait_for_sleepers_async(1)  # the sleep branch's
    [step] = [s for s in handle.snapshot().steps if s.step_id == "any_of"]
    assert step.deadline is not None
    assert step.deadline.timestamp() == start + 110
    fake_clock.advance(9)
    await fake_clock.wait_for_sleepers_async(1)
    assert handle.status is workflow.WAITING
    fake_clock.advance(1)
    assert await handle == ("expired", None)
    assert await rows("SELECT listener, payload, epoch(deadline) FROM events WHERE step_id = 'any_of'") == [
        ("any of: approve, expired", '["expired", null]', start + 110)
    ]


async def test_a_custom_listener_wins_alone_is_committed_and_the_losers_are_cleaned_up(
    aruntime: evkit.Runtime,
) -> None:
    wait = workflow.wait_for_any(
        [
            workflow.wait_for_event(NeverListener, "first"),
            workflow.wait_for_event(ImmediateListener, {"n": 1}),
            workflow.wait_for_event(NeverListener, "third"),
        ]
    )
    assert await workflow.run_async(wait, workflow_id="w") == (1, {"n": 1})
    assert sorted(Recorder.calls, key=repr) == sorted(
        [
            ("poll", "first"),
            ("poll", {"n": 1}),
            ("poll", "third"),
            ("cleanup", "first"),
            ("cleanup", "third"),
            ("commit", {"n": 1}),
        ],
        key=repr,
    )
    assert Recorder.calls[-1] == ("commit", {"n": 1})  # after the cleanups: the winner is final
    assert await rows("SELECT listener, payload, source_id, state FROM events") == [
        ("any of: 0, 1, 2", '[1, {"n": 1}]', "immediate:{'n': 1}", "committed")
    ]


async def test_timeout_on_the_whole_gives_the_default_and_cleans_up_every_branch(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    wait = workflow.wait_for_any(
        {"a": workflow.wait_for_event(NeverListener, "a"), "b": workflow.wait_for_event(NeverListener, "b")},
        timeout_seconds=5,
        default="nobody answered",
    )
    handle = workflow.run_async(wait, workflow_id="w")
    await fake_clock.wait_for_sleepers_async(1)
    fake_clock.advance(5)
    assert await handle == "nobody answered"
    assert sorted(call for call in Recorder.calls if call[0] == "cleanup") == [
        ("cleanup", "a"),
        ("cleanup", "b"),
    ]
    assert await rows("SELECT payload, source_id, state FROM events") == [
        ('"nobody answered"', "evkit:timeout-default", "committed")
    ]


async def test_timeout_on_the_whole_without_default_raises(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    wait = workflow.wait_for_any({"a": workflow.wait_for_event(NeverListener, "a")}, timeout_seconds=5)
    handle = workflow.run_async(wait, workflow_id="w")
    await fake_clock.wait_for_sleepers_async(1)
    fake_clock.advance(5)
    with pytest.raises(workflow.WorkflowExecutionError) as info:
        await handle
    assert isinstance(info.value.__cause__, workflow.EventTimeoutError)
    assert Recorder.calls[-1] == ("cleanup", "a")


async def test_a_failing_branch_fails_the_wait_and_names_the_branch(aruntime: evkit.Runtime) -> None:
    wait = workflow.wait_for_any(
        {
            "broken": workflow.wait_for_event(BrokenListener),
            "other": workflow.wait_for_event(NeverListener, "other"),
        }
    )
    with pytest.raises(
        evkit.StepFailedError,
        match=r"^Listener any of: broken, other of event step 'any_of' in run 'w' raised "
        r"ConnectionError\('source unavailable'\) while polling\. Resume the run",
    ) as info:
        await workflow.run_async(wait, workflow_id="w")
    cause = info.value.__cause__
    assert isinstance(cause, ConnectionError)
    assert cause.__notes__ == ["Raised by branch 'broken' (BrokenListener) of wait_for_any."]
    assert ("cleanup", "other") in Recorder.calls


async def test_cancelling_the_run_cancels_every_branch_with_its_cleanup(aruntime: evkit.Runtime) -> None:
    wait = workflow.wait_for_any([workflow.wait_for_event(NeverListener, "a"), workflow.sleep(60)])
    handle = workflow.run_async(wait, workflow_id="w")
    await handle.wait_waiting(timeout_seconds=5)
    handle.cancel()
    with pytest.raises(workflow.WorkflowCancellationError):
        await handle
    assert Recorder.calls == [("poll", "a"), ("cleanup", "a")]
    assert await rows("SELECT state FROM events") == [("cancelled",)]


async def test_a_posted_event_wins_over_a_timer(aruntime: evkit.Runtime) -> None:
    wait = workflow.wait_for_any(
        {
            "approval": workflow.wait_for_event(workflow.HTTPListener, key="approval"),
            "expired": workflow.sleep(60),
        }
    )
    handle = workflow.run_async(wait, workflow_id="w")
    server = await serve_events_async()
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.event_url("w", "approval"), json={"approved": True}) as reply,
    ):
        assert reply.status == 202
    assert await handle == ("approval", {"approved": True})
    assert await rows("SELECT key, source, delivered_to FROM inbox_events") == [
        ("approval", "http", "any_of")
    ]
