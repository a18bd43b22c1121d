"""The durable inbox of events sent by hand or over HTTP, and the listener that waits for them.

The inbox keeps every sent event durably in the store until an event step checkpoints
it; the checkpoint records the inbox event's id as its ``source_id``, which is what makes
an inbox event taken once, across crashes, even if two steps wait on the same key.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import final

from evkit import codec
from evkit.answers import Answer
from evkit.context import EventContext, get_event_context
from evkit.listeners.base import NOTHING_TO_DESCRIBE, EventListener, WaitDescription
from evkit.services import Service
from evkit.store import WriteQueue, now
from evkit.store.reads import inbox_key_of, unclaimed_inbox_of_run
from evkit.store.rows import InboxRecord


def _readable(payload: object) -> str:
    """The inbox's readable form of a sent event (column ``payload`` of ``inbox_events``)."""
    if isinstance(payload, Answer):  # an ask step's validated answer: JSON, with who sent it
        return payload.readable()
    return codec.readable(payload)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What :meth:`Inbox.send` did: the event's id, and whether it was a repeat."""

    event_id: str
    duplicate: bool


@final
class HandOver:
    """A sent event handed straight to a waiting step (see :meth:`Inbox._hand_over`)."""

    __slots__ = ("durable", "record")

    def __init__(self, record: InboxRecord, durable: asyncio.Future[asyncio.Future[None]]) -> None:
        self.record = record  # written only if no checkpoint takes the event over
        self.durable = durable  # resolves to the future of the event's durable record

    def settle(self, durable: asyncio.Future[None]) -> None:
        """The event's record is queued: the send returns once ``durable`` resolves."""
        if not self.durable.done():  # done: the send was cancelled (the record stays queued)
            self.durable.set_result(durable)

    def fail(self, exc: BaseException) -> None:
        """The event's record could not be queued: the send raises ``exc``."""
        if not self.durable.done():
            self.durable.set_exception(exc)


@final
class Inbox(Service):
    """Durable mailboxes keyed by ``(workflow_id, key)``; lives on the engine's loop."""

    def __init__(self, queue: WriteQueue) -> None:
        self._queue = queue
        self._waiters: dict[tuple[str, str], list[asyncio.Future[None]]] = defaultdict(list)
        # Events a wait took, by (workflow_id, event_id): their key and payload, so that a
        # wait that drops its event without a checkpoint can give it back (give_back).
        self._claimed: dict[tuple[str, str], tuple[str, bytes]] = {}
        # Sends under way by (workflow_id, key, event_id); each future resolves when its send
        # ends, True if the event is then durable. A repeat waits for it (see send).
        self._sending: dict[tuple[str, str, str], asyncio.Future[bool]] = {}
        # Per run: its unclaimed events, key -> {event_id: blob} in send order. Loaded by
        # one store read when the run's first wait starts, then kept up to date by send(),
        # so a wait costs no store read (100,000 waits would otherwise pay 100,000 reads).
        self._index: dict[str, dict[str, dict[str, bytes]]] = {}
        self._loading: dict[str, asyncio.Task[None]] = {}
        # Sent events on their way to a waiting step's checkpoint, by (workflow_id, event_id).
        self._handovers: dict[tuple[str, str], HandOver] = {}

    async def send(
        self,
        workflow_id: str,
        key: str,
        payload: object,
        *,
        event_id: str | None = None,
        source: str = "notebook",
        known_new: bool = False,
    ) -> SendResult:
        """Store an event durably, then wake a step waiting on ``key``.

        Returns once the event is committed to the store. A repeat of an ``event_id`` that
        was already sent for this key stores nothing and returns ``duplicate=True``, also
        only once the first copy is committed: a repeat made while the first send still
        waits for its commit (a client retrying after a timeout) waits for that commit, and
        if the first send fails, the repeat stores the event itself.
        ``known_new=True`` skips that store read: the caller has checked, while no other
        send of this ``event_id`` could run, that it is new (the HTTP inbox does).

        Raises:
            TypeError: The payload cannot be pickled (nothing is stored).
            ValueError: ``event_id`` was already sent to this run under another key.
        """
        blob = codec.dumps(payload)
        given = event_id is not None
        event_id = event_id or uuid.uuid4().hex
        marker = (workflow_id, key, event_id)
        while (first := self._sending.get(marker)) is not None:
            # Answering "duplicate" now would tell the caller its event is safe while the
            # first copy may still be lost (a crash before its commit). Shielded: a
            # cancelled repeat must not cancel the first send's outcome.
            if await asyncio.shield(first):
                return SendResult(event_id, duplicate=True)
            # The first send failed or was cancelled, perhaps after queueing its row: the
            # store read below (which waits for queued rows) decides.
            known_new = False
        # Marked before the store read: a concurrent repeat must not pass the check too.
        sending = self._sending[marker] = asyncio.get_running_loop().create_future()
        durable_now = False
        try:
            # Only an id the caller chose can repeat; a fresh uuid needs no store read.
            if given and not known_new:
                sent_under = await self._queue.read(inbox_key_of, workflow_id, event_id)
                if sent_under == key:
                    durable_now = True  # read from committed data
                    return SendResult(event_id, duplicate=True)
                if sent_under is not None:
                    # An event id names one event of the run: the same id under another
                    # key would never be delivered (the first delivery takes the id).
                    raise ValueError(
                        f"Event id {event_id!r} was already sent to run {workflow_id!r} under key "
                        f"{sent_under!r}, not {key!r}. Event ids must be unique within a run: "
                        "use a new event_id."
                    )
            record = InboxRecord(workflow_id, key, event_id, now(), blob, _readable(payload), source)
            if self._can_hand_over(workflow_id, key):
                durable = await self._hand_over(record)
            else:
                durable = self._queue.append(record)
                # Wake the wait now, not after the commit: its checkpoint then joins this
                # batch (one commit, not two). Safe, as batches commit in order: no
                # checkpoint of this event can be durable before the event is, and we
                # still return only once it is.
                self._deliver(workflow_id, [(key, event_id, blob)])
            await durable
            durable_now = True
        finally:
            del self._sending[marker]
            sending.set_result(durable_now)
        return SendResult(event_id, duplicate=False)

    async def send_many(
        self, workflow_id: str, events: Iterable[tuple[str, object]], *, source: str = "notebook"
    ) -> list[str]:
        """Store many ``(key, payload)`` events in one transaction, then wake their waits.

        Returns their new event ids, in order, once all are committed to the store.

        Raises:
            TypeError: A payload cannot be pickled (nothing is stored).
        """
        sent_at = now()
        items = list(events)
        # Random ids like uuid4().hex, from one urandom call, not a syscall per id.
        random = os.urandom(16 * len(items)).hex()
        records = [
            InboxRecord(
                workflow_id,
                key,
                random[32 * i : 32 * i + 32],
                sent_at,
                codec.dumps(value),
                _readable(value),
                source,
            )
            for i, (key, value) in enumerate(items)
        ]
        if not records:
            return []
        for record in records:
            durable = self._queue.append(record)
        self._deliver(workflow_id, [(r.key, r.event_id, r.payload_blob) for r in records])
        await durable  # one batch: every row of it is committed together (woken early: see send)
        return [record.event_id for record in records]

    def _can_hand_over(self, workflow_id: str, key: str) -> bool:
        """Whether a step is waiting on ``key`` and would take a new event at once.

        Only then is the event handed over (see `_hand_over`): the run's index is loaded
        and holds no older event on the key, so the woken wait takes this one.
        """
        index = self._index.get(workflow_id)
        return (
            index is not None
            and workflow_id not in self._loading
            and not index.get(key)
            and bool(self._waiters.get((workflow_id, key)))
        )

    async def _hand_over(self, record: InboxRecord) -> asyncio.Future[None]:
        """Give a sent event to the step waiting for it; return the future of its durable record.

        The wait wakes (within two loop iterations) and checkpoints the event at once; if its
        checkpoint holds exactly the sent payload, it takes the handover (`taken_by_checkpoint`)
        and its row records the send too: the event is stored by one row, one statement,
        one commit. If not (the wait was cancelled, its listener changed the payload or
        checkpoints later), the inbox row is queued in the same loop iteration, after the
        wait had its turn, as if it had not been handed over.
        """
        workflow_id, key, event_id, blob = (
            record.workflow_id,
            record.key,
            record.event_id,
            record.payload_blob,
        )
        loop = asyncio.get_running_loop()
        handover = HandOver(record, loop.create_future())
        self._handovers[(workflow_id, event_id)] = handover
        self._deliver(workflow_id, [(key, event_id, blob)])
        # Runs after the woken wait had its turn: a polling wait runs in the next loop
        # iteration, a parked one (see wake_when_ready) gets its task then and runs in the
        # one after, before this.
        loop.call_soon(loop.call_soon, self._queue_unless_taken, handover)
        return await handover.durable

    def taken_by_checkpoint(self, workflow_id: str, event_id: str, blob: bytes) -> HandOver | None:
        """The handover of a sent event whose checkpoint (holding ``blob``) is being queued.

        Returns ``None`` unless the event is being handed over and ``blob`` is its payload;
        the caller must then queue the checkpoint with the send's ``inbox_*`` fields and
        `settle` it.
        """
        handover = self._handovers.get((workflow_id, event_id))
        if handover is None or handover.record.payload_blob != blob:
            return None
        del self._handovers[(workflow_id, event_id)]
        return handover

    def _queue_unless_taken(self, handover: HandOver) -> None:
        workflow_id, event_id = handover.record.workflow_id, handover.record.event_id
        if self._handovers.pop((workflow_id, event_id), None) is None:
            return  # a checkpoint took it
        try:
            handover.settle(self._queue.append(handover.record))
        except BaseException as exc:  # the store failed: the send must hear of it
            handover.fail(exc)

    def _deliver(self, workflow_id: str, events: list[tuple[str, str, bytes]]) -> None:
        """Index sent events (if the run's index exists) and wake their waits.

        While the index loads, its waits are left asleep: the load wakes the waits of every
        key that has events when it ends (woken now, they would only wait again).
        """
        index = self._index.get(workflow_id)
        loading = workflow_id in self._loading
        for key, event_id, blob in events:
            if index is not None and (workflow_id, event_id) not in self._claimed:
                index.setdefault(key, {})[event_id] = blob
            if loading:
                continue
            for waiter in self._waiters.pop((workflow_id, key), []):
                if not waiter.done():
                    waiter.set_result(None)

    async def take(self, workflow_id: str, key: str) -> tuple[str, object]:
        """Wait for the oldest event on ``key`` no step has taken; return ``(event_id, payload)``."""
        while True:
            waiter = self.ready(workflow_id, key)
            if waiter is None:
                taken = self._take_now(workflow_id, key)
                if taken is not None:
                    return taken
                waiter = self._add_waiter(workflow_id, key)
            try:
                await waiter
            finally:
                self._drop_waiter(workflow_id, key, waiter)

    def ready(self, workflow_id: str, key: str) -> asyncio.Future[None] | None:
        """``None`` if an event on ``key`` is there to take now, else a future for when one may be.

        A wait woken by the future takes the event, or waits again.

        Also while the run's index loads: the load wakes only the waits whose key has
        events, so the many waits of a fresh run cost no wake-up of their own.
        """
        self._start_loading(workflow_id)
        if workflow_id not in self._loading and key in self._index.get(workflow_id, ()):
            return None
        return self._add_waiter(workflow_id, key)

    def _take_now(self, workflow_id: str, key: str) -> tuple[str, object] | None:
        index = self._index.get(workflow_id)
        if index is None or workflow_id in self._loading:
            return None
        events = index.get(key)
        if not events:
            return None
        event_id = next(iter(events))
        blob = events.pop(event_id)
        if not events:
            del index[key]  # an emptied dict keeps its hash table: drop it
        self._claimed[(workflow_id, event_id)] = (key, blob)
        return event_id, codec.loads(blob)

    def _add_waiter(self, workflow_id: str, key: str) -> asyncio.Future[None]:
        waiter = _Waiter(self, workflow_id, key)
        self._waiters[(workflow_id, key)].append(waiter)
        return waiter

    def give_back(self, workflow_id: str, event_id: str) -> None:
        """Make an event a wait took available again, as the oldest on its key.

        For a wait that will not checkpoint the event it took: it was cancelled, or it
        lost a ``wait_for_any``. The next wait on the key takes it. Nothing happens if the
        run's execution ended meanwhile (a resume reads the event from the store anyway).
        """
        claim = self._claimed.pop((workflow_id, event_id), None)
        index = self._index.get(workflow_id)
        if claim is None or index is None:
            return
        key, blob = claim
        index[key] = {event_id: blob, **index.get(key, {})}
        if workflow_id in self._loading:
            return  # the load wakes the waits of every key that has events
        for waiter in self._waiters.pop((workflow_id, key), []):
            if not waiter.done():
                waiter.set_result(None)

    def prime(self, workflow_id: str) -> None:
        """Start reading the run's unclaimed events now (its waits would start it anyway).

        The engine calls it before a run's steps start, when the store has nothing of the
        run queued, so the read does not wait for the rows its waits queue.
        """
        self._start_loading(workflow_id)

    def _start_loading(self, workflow_id: str) -> None:
        if workflow_id in self._index:  # loaded, or loading
            return
        # Sends that commit while the read runs go into this dict; the read's rows are
        # older, so they are put first (a row in both is kept once, by event id).
        index = self._index[workflow_id] = {}
        loading = asyncio.get_running_loop().create_task(self._load_index(workflow_id, index))
        loading.add_done_callback(lambda task: task.cancelled() or task.exception())
        self._loading[workflow_id] = loading

    async def _load_index(self, workflow_id: str, index: dict[str, dict[str, bytes]]) -> None:
        try:
            rows = await self._queue.read(unclaimed_inbox_of_run, workflow_id)
        except BaseException as exc:
            if self._index.get(workflow_id) is index:
                del self._index[workflow_id]  # the next wait reads again
            for (run, _), waiters in list(self._waiters.items()):
                for waiter in list(waiters) if run == workflow_id else ():  # cancel() drops it
                    if waiter.done():
                        continue
                    if isinstance(exc, asyncio.CancelledError):
                        waiter.cancel()
                    else:
                        waiter.set_exception(exc)
            raise
        finally:
            if self._loading.get(workflow_id) is asyncio.current_task():
                del self._loading[workflow_id]
        loaded: dict[str, dict[str, bytes]] = {}
        for key, event_id, blob in rows:
            if (workflow_id, event_id) not in self._claimed:
                loaded.setdefault(key, {})[event_id] = blob
        for key, newer in index.items():
            for event_id, blob in newer.items():
                loaded.setdefault(key, {}).setdefault(event_id, blob)
        index.clear()
        index.update(loaded)
        for key in index:
            for waiter in self._waiters.pop((workflow_id, key), []):
                if not waiter.done():
                    waiter.set_result(None)

    def release_run(self, workflow_id: str) -> None:
        """Forget which events this run's waits took, and its index.

        Called when its execution ends, so a later resume reads the events no checkpoint took.
        """
        self._claimed = {claim: taken for claim, taken in self._claimed.items() if claim[0] != workflow_id}
        self._index.pop(workflow_id, None)
        self._loading.pop(workflow_id, None)

    def _drop_waiter(self, workflow_id: str, key: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters.get((workflow_id, key))
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[(workflow_id, key)]


class _Waiter(asyncio.Future[None]):
    """A wait's wake-up on one key of the inbox; cancelled, it leaves the key's waiters.

    A parked wait (see ``ManualListener.wake_when_ready``) is cancelled through this
    future alone: a method rather than a done callback, so it costs no object more.
    """

    __slots__ = ("_inbox", "_key", "_workflow_id")

    def __init__(self, inbox: Inbox, workflow_id: str, key: str) -> None:
        super().__init__(loop=asyncio.get_running_loop())
        self._inbox, self._workflow_id, self._key = inbox, workflow_id, key

    def cancel(self, msg: object | None = None) -> bool:
        if not super().cancel(msg):
            return False
        self._inbox._drop_waiter(self._workflow_id, self._key, self)
        return True


class ManualListener(EventListener):
    """Waits for an event sent with ``workflow.send_event(workflow_id, key, payload)``.

    The event (the step's value) is the payload. An event sent before the wait starts is
    kept and delivered when it does; a repeat of the same event id is delivered once.
    """

    uses_inbox = True

    def __init__(self) -> None:
        self._taken: str | None = None

    @classmethod
    def describe_wait(
        cls, args: tuple[object, ...], kwargs: Mapping[str, object], *, now: float
    ) -> WaitDescription:
        """The ``key`` the wait takes its event from, which is also its label."""
        key = kwargs.get("key", args[0] if args else None)
        return WaitDescription(inbox_key=key, label=key) if isinstance(key, str) else NOTHING_TO_DESCRIBE

    @classmethod
    def wake_when_ready(
        cls, context: EventContext, args: tuple[object, ...], kwargs: Mapping[str, object]
    ) -> asyncio.Future[None] | None:
        """Park the wait until an event on its key is in the inbox (see the base class).

        Not for a subclass with its own ``poll_for_event`` or ``poll_cancelled``: those
        are awaited as written, from the start of the wait.
        """
        if cls.poll_for_event is not ManualListener.poll_for_event or (
            cls.poll_cancelled is not ManualListener.poll_cancelled
        ):
            return None
        key = kwargs.get("key", args[0] if args else None)
        if not isinstance(key, str):
            return None
        return context.services.require(Inbox).ready(context.workflow_id, key)

    async def poll_for_event(self, key: str) -> object:  # type: ignore[override]
        """Return the payload of the oldest event sent to this run under ``key``."""
        context = get_event_context()
        inbox = context.services.require(Inbox)
        self._taken, payload = await inbox.take(context.workflow_id, key)
        return payload

    def source_id(self, event: object) -> str | None:
        """The inbox id of the event this instance took (stored with the checkpoint)."""
        return self._taken

    async def poll_cancelled(self, key: str) -> None:  # type: ignore[override]
        """Give the event this instance took back to the inbox: it was not checkpointed.

        That happens to a losing branch of ``wait_for_any`` whose poll took an event
        after the winner's: the next wait on ``key`` takes it.
        """
        if self._taken is not None:
            context = get_event_context()
            context.services.require(Inbox).give_back(context.workflow_id, self._taken)
            self._taken = None
