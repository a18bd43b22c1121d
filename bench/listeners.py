"""Listeners and steps the benchmarks use (module level, so cloudpickle stores them by reference).

Imports evkit; the floors never import this module.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Mapping

from evkit import workflow
from evkit.listeners.base import WaitDescription


class WaitCounter:
    """Counts started waits; ``reached`` is set when ``expected`` of them have started."""

    def __init__(self) -> None:
        self.count = 0
        self.expected = 0
        self.reached = threading.Event()

    def reset(self, expected: int) -> None:
        self.count = 0
        self.expected = expected
        self.reached.clear()

    def hit(self) -> None:
        self.count += 1
        if self.count == self.expected:
            self.reached.set()


POLLS = WaitCounter()
COMMITS = WaitCounter()


class CountingManualListener(workflow.ManualListener):
    """The built-in manual listener, counting started waits in :data:`POLLS`.

    It counts in ``describe_wait``, which the engine calls once as each wait starts: its
    waits stay the built-in listener's (parked until their event is sent), and the
    counting costs no object per wait, which the floor does not pay either.
    """

    @classmethod
    def describe_wait(
        cls, args: tuple[object, ...], kwargs: Mapping[str, object], *, now: float
    ) -> WaitDescription:
        POLLS.hit()
        return super().describe_wait(args, kwargs, now=now)


class StreamSource:
    """An in-memory stream of numbered events released in chunks on the engine's loop."""

    def __init__(self) -> None:
        self.futures: dict[int, asyncio.Future[int]] = {}

    def future(self, i: int) -> asyncio.Future[int]:
        fut = self.futures.get(i)
        if fut is None:
            fut = self.futures[i] = asyncio.get_running_loop().create_future()
        return fut

    def release(self, i: int) -> None:
        fut = self.future(i)
        if not fut.done():
            fut.set_result(i)


STREAM = StreamSource()


class StreamListener(workflow.EventListener):
    """Waits for event ``i`` of :data:`STREAM`; counts commits in :data:`COMMITS`.

    ``event_checkpointed`` runs only once the checkpoint is durable, so counting there
    measures durable checkpoints.
    """

    async def poll_for_event(self, i: int) -> int:  # type: ignore[override]
        POLLS.hit()
        return await STREAM.future(i)

    async def event_checkpointed(self, event: object) -> None:
        COMMITS.hit()


@workflow.step
def handle(event: object) -> object:
    """The downstream step of each wait in the wait scenarios."""
    return event


@workflow.step
def collect(*values: object) -> int:
    """The fan-in step that ends the wait scenarios."""
    return len(values)


class CountingKafkaListener(workflow.KafkaListener):
    """``KafkaListener`` counting started waits in :data:`POLLS` and commits in :data:`COMMITS`.

    A plain ``def`` poll, as the built-in one: counting costs no coroutine per wait, and
    the engine awaits the consumer's wait (which registers it) in the same step.
    """

    def poll_for_event(self, topic: str, **kwargs: object) -> Awaitable[object]:  # type: ignore[override]
        taking = super().poll_for_event(topic, **kwargs)  # type: ignore[arg-type]
        POLLS.hit()
        return taking

    async def event_checkpointed(self, event: object) -> None:
        await super().event_checkpointed(event)
        COMMITS.hit()
