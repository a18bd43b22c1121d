"""Events sent by hand (``workflow.send_event``) or by the HTTP inbox, and the listener
that waits for them.

The inbox keeps every sent event durably in the store until an event step checkpoints
it; the checkpoint records the inbox event's id as its ``source_id``, which is what makes
an inbox event taken once, across crashes, even if two steps wait on the same key.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import final

from evkit import codec
from evkit.context import get_event_context
from evkit.listeners.base import EventListener
from evkit.store import WriteQueue, now
from evkit.store.reads import inbox_contains, unclaimed_inbox


@dataclass(frozen=True, slots=True)
class SendResult:
    """What :meth:`Inbox.send` did: the event's id, and whether it was a repeat."""

    event_id: str
    duplicate: bool


@final
class Inbox:
    """Durable mailboxes keyed by ``(workflow_id, key)``; lives on the engine's loop."""

    def __init__(self, queue: WriteQueue) -> None:
        self._queue = queue
        self._waiters: dict[tuple[str, str], list[asyncio.Future[None]]] = defaultdict(list)
        self._claimed: set[tuple[str, str]] = set()
        self._sending: set[tuple[str, str, str]] = set()

    async def send(
        self, workflow_id: str, key: str, payload: object, *, event_id: str | None = None, source: str = "notebook"
    ) -> SendResult:
        """Store an event durably, then wake a step waiting on ``key``.

        Returns once the event is committed to the store. A repeat of an ``event_id`` that
        was already sent for this key stores nothing and returns ``duplicate=True``.

        Raises:
            TypeError: The payload cannot be pickled (nothing is stored).
        """
        blob = codec.dumps(payload)
        event_id = event_id or uuid.uuid4().hex
        marker = (workflow_id, key, event_id)
        if marker in self._sending or await self._queue.read(inbox_contains, workflow_id, key, event_id):
            return SendResult(event_id, duplicate=True)
        self._sending.add(marker)
        try:
            row = (workflow_id, key, event_id, now(), blob, codec.readable(payload), source)
            await self._queue.append("inbox", row)
        finally:
            self._sending.discard(marker)
        for waiter in self._waiters.pop((workflow_id, key), []):
            if not waiter.done():
                waiter.set_result(None)
        return SendResult(event_id, duplicate=False)

    async def take(self, workflow_id: str, key: str) -> tuple[str, object]:
        """Wait for the oldest event on ``key`` no step has taken; return ``(event_id, payload)``."""
        while True:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[(workflow_id, key)].append(waiter)
            try:
                for event_id, blob in await self._queue.read(unclaimed_inbox, workflow_id, key):
                    if (workflow_id, event_id) not in self._claimed:
                        self._claimed.add((workflow_id, event_id))
                        return event_id, codec.loads(blob)
                await waiter
            finally:
                self._drop_waiter(workflow_id, key, waiter)

    def release_run(self, workflow_id: str) -> None:
        """Forget which events this run's waits took (called when its execution ends, so a
        later resume sees the events no checkpoint took)."""
        self._claimed = {claim for claim in self._claimed if claim[0] != workflow_id}

    def _drop_waiter(self, workflow_id: str, key: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters.get((workflow_id, key))
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[(workflow_id, key)]


class ManualListener(EventListener):
    """Waits for an event sent with ``workflow.send_event(workflow_id, key, payload)``.

    The event (the step's value) is the payload. An event sent before the wait starts is
    kept and delivered when it does; a repeat of the same event id is delivered once.
    """

    def __init__(self) -> None:
        self._taken: str | None = None

    async def poll_for_event(self, key: str) -> object:  # type: ignore[override]
        """Return the payload of the oldest event sent to this run under ``key``."""
        context = get_event_context()
        inbox = context.services["inbox"]
        assert isinstance(inbox, Inbox)
        self._taken, payload = await inbox.take(context.workflow_id, key)
        return payload

    def source_id(self, event: object) -> str | None:
        """The inbox id of the event this instance took (stored with the checkpoint)."""
        return self._taken
