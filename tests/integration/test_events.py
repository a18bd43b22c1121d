"""The event contract on a real loop and a real store: poll, durable checkpoint, commit,
downstream; timeouts, cancellation, failures and resume."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

import evkit
from evkit import workflow


class Recorder:
    """Shared, in-process record of listener calls (listeners themselves are stateless)."""

    calls: ClassVar[list[tuple[str, object]]] = []
    seen_in_store_at_commit: ClassVar[list[int]] = []


@pytest.fixture(autouse=True)
def _clear_recorder() -> None:
    Recorder.calls = []
    Recorder.seen_in_store_at_commit = []


class ImmediateListener(workflow.EventListener):
    """Returns its argument at once; checks at commit time what the store holds."""

    async def poll_for_event(self, value: object) -> object:
        Recorder.calls.append(("poll", value))
        return value

    async def event_checkpointed(self, event: object) -> None:
        context = workflow.get_event_context()
        # Read from another thread through its own cursor: it sees only committed data.
        row = await asyncio.to_thread(
            lambda: evkit.sql(
                "SELECT count(*) FROM events"
                " WHERE workflow_id = ? AND state IN ('checkpointed', 'committed')",
                [context.workflow_id],
            ).fetchall()[0]
        )
        Recorder.seen_in_store_at_commit.append(row[0])
        Recorder.calls.append(("commit", event))


class FailingPollListener(workflow.EventListener):
    async def poll_for_event(self, attempts_to_fail: int) -> str:
        attempt = workflow.get_event_context().attempt
        Recorder.calls.append(("poll", attempt))
        if attempt <= attempts_to_fail:
            raise ConnectionError(f"source unavailable on attempt {attempt}")
        return f"event on attempt {attempt}"


class FailingCommitListener(workflow.EventListener):
    fail = True

    async def poll_for_event(self) -> str:
        Recorder.calls.append(("poll", None))
        return "payload"

    async def event_checkpointed(self, event: object) -> None:
        Recorder.calls.append(("commit", workflow.get_event_context().event_id))
        if FailingCommitListener.fail:
            raise OSError("broker said no")


class CleanupListener(workflow.EventListener):
    async def poll_for_event(self, key: str) -> str:
        Recorder.calls.append(("poll", key))
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def poll_cancelled(self, key: str) -> None:
        Recorder.calls.append(("cleanup", key))


@workflow.step
def collect(*values: object) -> tuple[object, ...]:
    return values


async def test_event_is_durable_before_its_commit_and_downstream_gets_it(aruntime: evkit.Runtime) -> None:
    result = await collect.step(workflow.wait_for_event(ImmediateListener, {"n": 1})).run_async(
        workflow_id="w"
    )
    assert result == ({"n": 1},)
    assert Recorder.calls == [("poll", {"n": 1}), ("commit", {"n": 1})]
    assert Recorder.seen_in_store_at_commit == [1]
    row = (await rows("SELECT state, payload, listener, poll_attempts, commits FROM events"))[0]
    assert row == ("committed", '{"n": 1}', "ImmediateListener", 1, 1)


async def test_events_arriving_together_are_checkpointed_in_one_transaction_before_any_commit(
    aruntime: evkit.Runtime,
) -> None:
    waits = [workflow.wait_for_event(ImmediateListener, i) for i in range(20)]
    await collect.step(*waits).run_async(workflow_id="group")
    # Every commit saw all 20 checkpoints already durable: one group commit.
    assert Recorder.seen_in_store_at_commit == [20] * 20


async def test_waiting_run_reports_waiting_and_which_step(aruntime: evkit.Runtime) -> None:
    handle = workflow.run_async(workflow.wait_for_event(workflow.ManualListener, key="go"), workflow_id="w")
    await handle.wait_waiting(timeout_seconds=5)
    assert handle.snapshot().waiting_on == ("ManualListener",)
    assert workflow.get_status("w") is workflow.WAITING
    await asyncio.to_thread(workflow.send_event, "w", "go", 42)
    assert await handle == 42
    assert handle.status is workflow.SUCCESSFUL


@workflow.step
def then_wait(_: object, key: str, timeout_seconds: float | None = None) -> evkit.StepNode:
    return workflow.wait_for_event(
        workflow.ManualListener, key=key, timeout_seconds=timeout_seconds, default="none left"
    )


async def test_event_sent_before_the_wait_starts_is_kept_and_a_repeat_is_delivered_once(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    first = then_wait.step(workflow.sleep(10), "k")
    second = then_wait.step(first, "k", 5)
    handle = workflow.run_async(collect.step(first, second), workflow_id="w")
    await fake_clock.wait_for_sleepers_async(1)
    engine = aruntime.engine()
    assert not (await engine.inbox.send("w", "k", "hello", event_id="e1")).duplicate
    assert (await engine.inbox.send("w", "k", "hello again", event_id="e1")).duplicate
    fake_clock.advance(10)  # the first wait starts only now, and finds the kept event
    await fake_clock.wait_for_sleepers_async(1)  # the second wait's timeout
    fake_clock.advance(5)
    assert await handle == ("hello", "none left")
    assert await rows("SELECT event_id, delivered_to FROM inbox_events") == [
        ("e1", "then_wait/ManualListener")
    ]


async def test_timeout_raises_event_timeout_error_in_the_step(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    handle = workflow.run_async(
        workflow.wait_for_event(workflow.ManualListener, key="never", timeout_seconds=30), workflow_id="t"
    )
    await fake_clock.wait_for_sleepers_async(1)
    fake_clock.advance(29)
    assert not handle.done()
    fake_clock.advance(1)
    with pytest.raises(workflow.WorkflowExecutionError) as info:
        await handle
    assert isinstance(info.value.__cause__, evkit.EventTimeoutError)
    assert str(info.value.__cause__) == (
        "Event step 'ManualListener' of run 't' got no event within timeout_seconds=30."
    )
    assert workflow.get_status("t") is workflow.FAILED
    assert (await rows("SELECT state FROM events"))[0] == ("failed",)


async def test_listener_that_raises_fails_the_run_with_its_cause_and_resume_polls_again(
    aruntime: evkit.Runtime,
) -> None:
    handle = workflow.run_async(workflow.wait_for_event(FailingPollListener, 1), workflow_id="f")
    with pytest.raises(workflow.WorkflowExecutionError) as info:
        await handle
    assert isinstance(info.value.__cause__, ConnectionError)
    assert workflow.get_status("f") is workflow.FAILED
    assert await workflow.resume_async("f") == "event on attempt 2"
    assert Recorder.calls == [("poll", 1), ("poll", 2)]


async def test_commit_failure_keeps_the_checkpoint_and_resume_commits_without_polling(
    aruntime: evkit.Runtime,
) -> None:
    FailingCommitListener.fail = True
    with pytest.raises(workflow.WorkflowExecutionError, match="event_checkpointed"):
        await workflow.run_async(workflow.wait_for_event(FailingCommitListener), workflow_id="c")
    FailingCommitListener.fail = False
    assert await workflow.resume_async("c") == "payload"
    assert Recorder.calls == [
        ("poll", None),
        ("commit", "c/FailingCommitListener"),
        ("commit", "c/FailingCommitListener"),
    ]


async def test_cancelling_a_waiting_run_awaits_the_cleanup_hook_and_records_cancelled(
    aruntime: evkit.Runtime,
) -> None:
    handle = workflow.run_async(workflow.wait_for_event(CleanupListener, "topic"), workflow_id="x")
    await handle.wait_waiting(timeout_seconds=5)
    await handle.cancel_async()
    with pytest.raises(workflow.WorkflowCancellationError):
        await handle
    assert Recorder.calls == [("poll", "topic"), ("cleanup", "topic")]
    assert workflow.get_status("x") is workflow.CANCELED
    assert (await rows("SELECT state FROM events"))[0] == ("cancelled",)
    with pytest.raises(workflow.WorkflowNotResumableError, match="cancelled runs cannot be resumed"):
        await workflow.resume_async("x")


async def test_sleep_deadline_is_fixed_when_the_step_starts(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    node = workflow.sleep(60)
    fake_clock.advance(1000)  # defining the node long before running it changes nothing
    handle = workflow.run_async(node, workflow_id="s")
    await fake_clock.wait_for_sleepers_async(1)
    fake_clock.advance(59)
    assert not handle.done()
    fake_clock.advance(1)
    assert await handle is None
    deadline = (await rows("SELECT epoch(deadline) FROM events"))[0]
    assert deadline[0] == pytest.approx(1_700_000_000 + 1000 + 60)


async def test_dynamic_continuation_waits_like_a_static_event(aruntime: evkit.Runtime) -> None:
    @workflow.step
    def ask(question: str) -> evkit.StepNode:
        return collect.step(question, workflow.wait_for_event(workflow.ManualListener, key="answer"))

    handle = workflow.run_async(ask.step("why?"), workflow_id="d")
    await handle.wait_waiting(timeout_seconds=5)
    assert handle.snapshot().waiting_on == ("ask/ManualListener",)
    await aruntime.engine().inbox.send("d", "answer", "because")
    assert await handle == ("why?", "because")
    assert await rows("SELECT step_id, state FROM events") == [("ask/ManualListener", "committed")]


@pytest.mark.slow
async def test_thousand_concurrent_waits_hold_no_extra_threads(aruntime: evkit.Runtime) -> None:
    import threading

    before = threading.active_count()
    waits = [workflow.wait_for_event(workflow.ManualListener, key=f"k{i}") for i in range(1000)]
    handle = workflow.run_async(collect.step(*waits), workflow_id="many")
    await handle.wait_waiting(timeout_seconds=5)
    assert len(handle.snapshot().waiting_on) == 1000
    assert threading.active_count() <= before + 2  # at most the store thread and one pool thread
    await handle.cancel_async()


async def rows(query: str) -> list[tuple[object, ...]]:
    """Run SQL from a worker thread, as async code should (evkit.sql blocks)."""
    return await asyncio.to_thread(lambda: evkit.sql(query).fetchall())


class SourceListener(workflow.EventListener):
    async def poll_for_event(self) -> str:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def event_checkpointed(self, event: object) -> None:
        Recorder.calls.append(("commit", event))


async def test_a_timeout_default_is_checkpointed_but_never_committed_at_the_source(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    handle = workflow.run_async(
        workflow.wait_for_event(SourceListener, timeout_seconds=10, default="fallback"), workflow_id="d"
    )
    await handle.wait_waiting(timeout_seconds=5)
    await fake_clock.wait_for_sleepers_async(1)
    fake_clock.advance(10)
    assert await handle == "fallback"
    assert Recorder.calls == []  # nothing came from the source: nothing to commit there
    assert await rows("SELECT state, payload, source_id FROM events") == [
        ("committed", '"fallback"', "evkit:timeout-default")
    ]


async def test_wait_status_wakes_on_changes_and_reports_an_earlier_end(aruntime: evkit.Runtime) -> None:
    handle = workflow.run_async(workflow.wait_for_event(workflow.ManualListener, key="k"), workflow_id="s")
    assert await handle.wait_status(workflow.WAITING, timeout_seconds=5) is workflow.WAITING
    await aruntime.engine().inbox.send("s", "k", 1)
    assert await handle.wait_status(timeout_seconds=5) is workflow.SUCCESSFUL
    with pytest.raises(evkit.RunStateError, match=r"^Run 's' ended SUCCESSFUL before it was WAITING"):
        await handle.wait_waiting(timeout_seconds=5)
