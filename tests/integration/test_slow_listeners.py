"""A listener that blocks the loop (a blocking call inside poll_for_event) is named in a
warning while it blocks; code that is not a listener's is left alone."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest

import evkit
from evkit import workflow

THRESHOLD = 0.05


@pytest.fixture(autouse=True)
def short_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """A short threshold keeps the test fast; engines read it when they are made."""
    monkeypatch.setenv("EVKIT_SLOW_LISTENER_SECONDS", str(THRESHOLD))


class Warnings(logging.Handler):
    """Collects evkit's warnings; ``seen`` is set (from the watchdog's thread) at the first."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.seen.set()


@pytest.fixture
def evkit_warnings() -> Iterator[Warnings]:
    handler = Warnings()
    logger = logging.getLogger("evkit")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


class BlockingListener(workflow.EventListener):
    """Blocks the loop thread, as a forgotten `time.sleep` would, until the warning is out."""

    release: ClassVar[threading.Event]

    async def poll_for_event(self, key: str) -> str:  # type: ignore[override]
        BlockingListener.release.wait(timeout=10)
        return key


@workflow.step
def collect(*values: object) -> tuple[object, ...]:
    return values


@pytest.mark.allow_blocking
async def test_a_listener_that_blocks_the_loop_is_named_in_a_warning(
    aruntime: evkit.Runtime, evkit_warnings: Warnings
) -> None:
    BlockingListener.release = evkit_warnings.seen  # it blocks until the warning is logged
    # The wait is the only source of `collect`: it runs inlined in collect's task, and the
    # warning must still name the wait's own step.
    result = await workflow.run_async(
        collect.step(workflow.wait_for_event(BlockingListener, "k")), workflow_id="slow"
    )
    assert result == ("k",)
    assert len(evkit_warnings.messages) == 1
    message = evkit_warnings.messages[0]
    assert message.startswith(
        "Listener BlockingListener.poll_for_event of event step 'BlockingListener' in run 'slow' has "
        f"blocked the event loop for over {THRESHOLD:g} s (now at "
    )
    assert message.endswith(
        "): every other wait, timer and widget on this loop is frozen meanwhile. Await instead of "
        "blocking (asyncio.sleep, an async client), or move the blocking call to a thread with "
        "`await asyncio.to_thread(...)`."
    )


@pytest.mark.allow_blocking
async def test_blocking_code_that_is_no_listeners_is_not_warned_about(
    aruntime: evkit.Runtime, evkit_warnings: Warnings
) -> None:
    handle = workflow.run_async(workflow.wait_for_event(workflow.ManualListener, key="go"), workflow_id="w")
    await handle.wait_waiting(timeout_seconds=5)
    # Like a notebook cell computing while a run waits: the loop is blocked, by the test.
    time.sleep(THRESHOLD * 4)  # noqa: ASYNC251 - blocking the loop is the scenario
    await handle.cancel_async()
    with pytest.raises(workflow.WorkflowCancellationError):
        await handle
    assert evkit_warnings.messages == []


class BriefPoll(workflow.EventListener):
    """Holds the loop for 2 ms, then waits without blocking: slow in bulk, never blocking."""

    async def poll_for_event(self, key: str) -> str:  # type: ignore[override]
        time.sleep(0.002)  # noqa: ASYNC251 - a little blocking work per wait is the scenario
        await asyncio.Event().wait()
        return key


@pytest.mark.slow
@pytest.mark.allow_blocking
async def test_a_loop_busy_with_many_short_listener_steps_is_not_blamed_on_one(
    aruntime: evkit.Runtime, evkit_warnings: Warnings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVKIT_SLOW_LISTENER_SECONDS", "0.1")
    # 300 polls start in one loop iteration: ~0.6 s without an answer to the watchdog's
    # ping, each sample inside some BriefPoll, never the same one for 0.1 s.
    handle = workflow.run_async(
        collect.step(*[workflow.wait_for_event(BriefPoll, f"k{i}") for i in range(300)]), workflow_id="busy"
    )
    await handle.wait_waiting(timeout_seconds=30)
    await handle.cancel_async()
    with pytest.raises(workflow.WorkflowCancellationError):
        await handle
    assert evkit_warnings.messages == []
