"""Kafka as an event source: read through a consumer group, commit offsets after the checkpoint.

It owns one confluent-kafka consumer per (bootstrap servers, group, topic, config) on the
engine's loop. The consumer's blocking calls run on its own two threads (one fetches, one
commits), never on the loop. Messages the store already has are never delivered again,
and offsets are committed only in ``event_checkpointed``, never past a message that is not
checkpointed (the commit rule in :class:`PartitionCommits`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, NamedTuple, cast, final

from evkit.context import get_event_context
from evkit.listeners.base import EventListener
from evkit.listeners.kafka_message import (
    DEFAULT_CONFIG,
    FIXED_CONFIG,
    ConfigItems,
    KafkaMessage as KafkaMessage,
    PartitionCommits,
    checked_config,
    consumer_config_items as consumer_config_items,
    source_id_of,
)
from evkit.services import Service, ServiceRegistry
from evkit.store.service import StoreReads

if TYPE_CHECKING:
    from confluent_kafka import Consumer as ConfluentConsumer, KafkaError, Message, TopicPartition

logger = logging.getLogger("evkit.kafka")

_IDLE_WAIT_SECONDS = 0.2  # how long one fetch blocks its thread when nothing is buffered
# Messages taken from librdkafka's buffer per fetch. Small batches keep few messages (and
# the objects of their waits) in flight at once, so most die before the GC's young
# passes move them to the old generation, whose passes walk every wait of a big run.
_MAX_BATCH = 1_000
_MAX_GAP_CHECK = 10_000  # offsets checked in the store before committing an untracked message
_JOIN_TIMEOUT_SECONDS = 60.0  # a commit refused by the group waits this long for the consumer to join


class KafkaListener(EventListener):
    """Waits for the next message of a Kafka topic, read through a consumer group.

    ``workflow.wait_for_event(workflow.KafkaListener, "orders", group="evkit",
    bootstrap_servers="127.0.0.1:9092")``: the step's value is a :class:`KafkaMessage`.
    The offset is committed (synchronously) only after the message's event is
    checkpointed; a message the store already holds is never delivered again, after a
    rebalance or a restart. Waits on one topic and group share one consumer per engine
    and get distinct messages, each partition's in order.
    """

    def poll_for_event(  # type: ignore[override]
        self,
        topic: str,
        *,
        group: str,
        bootstrap_servers: str,
        config: Mapping[str, object] | None = None,
    ) -> Awaitable[KafkaMessage]:
        """Return the next message of ``topic`` for this group.

        A plain ``def`` that hands back the consumer's wait for the message: the engine
        awaits it, and a wait then holds one coroutine fewer.

        Args:
            topic: The topic to read.
            group: The consumer group (``group.id``): offsets are committed for it.
            bootstrap_servers: ``bootstrap.servers``, e.g. ``"127.0.0.1:9092"``.
            config: More confluent-kafka consumer settings, e.g. ``{"session.timeout.ms":
                6000}`` or security settings. A new group starts at the earliest offset
                unless ``auto.offset.reset`` says otherwise.

        Raises:
            TypeError: An argument has the wrong type.
            ValueError: ``config`` sets what evkit owns (auto commit, ``group.id``, ...).
            ImportError: confluent-kafka is not installed (``pip install 'evkit[kafka]'``).
            RuntimeError: The consumer failed (the message names topic and group).
        """
        items = checked_config(topic, group, bootstrap_servers, config)
        context = get_event_context()
        consumer = kafka_consumers(context.services).consumer(bootstrap_servers, group, topic, items)
        return consumer.take(context.workflow_id)

    def event_checkpointed(self, event: object) -> Awaitable[None]:  # type: ignore[override]
        """Commit the message's offset (synchronously), now that its event is checkpointed.

        The committed offset of a partition is the lowest offset this engine read and has
        not checkpointed yet (or the last checkpointed one + 1): it never moves backwards
        and never passes a message that is not checkpointed. Idempotent: the engine calls
        it again after a crash between the checkpoint and the commit.

        A plain ``def`` that hands back the commit's awaitable: the engine awaits it, and
        the commits of many events then cost no coroutine each.

        Raises:
            RuntimeError: The broker refused the commit for another reason than a
                rebalance (the message names topic, partition and offset).
        """
        if not isinstance(event, KafkaMessage):  # the `default` of a timed-out wait
            return _nothing()
        consumers = kafka_consumers(get_event_context().services)
        return consumers.consumer(event.bootstrap_servers, event.group, event.topic, event.config).commit(
            event
        )

    def source_id(self, event: object) -> str | None:
        """``kafka:<group>:<topic>:<partition>:<offset>``, stored with the checkpoint."""
        return event.source_id if isinstance(event, KafkaMessage) else None


@final
class KafkaConsumers(Service):
    """The engine's Kafka service: one consumer per (bootstrap servers, group, topic, config).

    Lives in the engine's services; the engine calls :meth:`release_run` when a run ends
    and :meth:`aclose` when it closes.
    """

    def __init__(self, store: StoreReads) -> None:
        self._store = store
        self._consumers: dict[tuple[str, str, str, ConfigItems], _Consumer] = {}

    def consumer(self, bootstrap_servers: str, group: str, topic: str, config: ConfigItems) -> _Consumer:
        """The consumer for these settings (made on first use, connected on first read)."""
        key = (bootstrap_servers, group, topic, config)
        consumer = self._consumers.get(key)
        if consumer is None:
            consumer = _Consumer(self._store, bootstrap_servers, group, topic, config, self._siblings)
            self._consumers[key] = consumer
        return consumer

    def _siblings(self, consumer: _Consumer) -> list[_Consumer]:
        """The other consumers of this engine with the same group and topic.

        They differ in settings: separate group members, which a rebalance can move a
        partition between.
        """
        return [
            other
            for other in self._consumers.values()
            if other is not consumer
            and (other.bootstrap_servers, other.group, other.topic)
            == (consumer.bootstrap_servers, consumer.group, consumer.topic)
        ]

    def release_run(self, workflow_id: str) -> None:
        """The run ended: messages its waits took but did not checkpoint are free again."""
        for consumer in self._consumers.values():
            consumer.release_run(workflow_id)

    def close_nowait(self) -> None:
        """Stop fetching now; each consumer is closed on its own thread."""
        consumers, self._consumers = list(self._consumers.values()), {}
        for consumer in consumers:
            consumer.close_nowait()

    async def aclose(self) -> None:
        """Stop fetching and close the consumers (they leave their groups)."""
        consumers, self._consumers = list(self._consumers.values()), {}
        for consumer in consumers:
            await consumer.aclose()


def kafka_consumers(services: ServiceRegistry) -> KafkaConsumers:
    """The engine's :class:`KafkaConsumers` service, made on first use."""
    consumers = services.get(KafkaConsumers)  # every commit asks: no closure made for the lookup
    if consumers is None:
        consumers = services.add(KafkaConsumers(services.require(StoreReads)))
    return consumers


class _Fetched(NamedTuple):
    """What one fetch brought: the messages, the errors, the source ids already checkpointed."""

    messages: list[KafkaMessage]
    errors: list[KafkaError]
    taken: set[str]


class _Consumer:
    """One confluent-kafka consumer: hands its messages to the waits, oldest wait first.

    Messages handed to a wait are *held* until checkpointed (or the run ends), so a
    re-read after a rebalance never gives them to a second wait. All state lives on the
    loop; the consumer's threads only call confluent-kafka and post rebalances back.
    """

    def __init__(
        self,
        store: StoreReads,
        bootstrap_servers: str,
        group: str,
        topic: str,
        config: ConfigItems,
        siblings: Callable[[_Consumer], list[_Consumer]],
    ) -> None:
        self._store = store
        self._siblings = siblings
        self.bootstrap_servers, self.group, self.topic, self.config = bootstrap_servers, group, topic, config
        self._waiters: deque[tuple[str, asyncio.Future[KafkaMessage]]] = deque()
        self._ready: deque[KafkaMessage] = deque()  # read, not in the store, no wait took it yet
        self._queued: set[tuple[int, int]] = set()  # (partition, offset) of the ready messages
        self._held: dict[tuple[int, int], str] = {}  # -> workflow id of the wait that took it
        self._held_messages: dict[tuple[int, int], KafkaMessage] = {}
        self._partitions: dict[int, PartitionCommits] = {}  # the assigned partitions
        self._commit_lock = asyncio.Lock()  # one untracked commit at a time
        # The callers waiting for the next commit round: one plain future each, so a
        # cancelled caller cancels only its own.
        self._round_waiters: list[asyncio.Future[None]] = []
        self._no_round: asyncio.Future[None] | None = None  # done: for callers with nothing to wait for
        self._flusher: asyncio.Task[None] | None = None
        self._joined = asyncio.Event()  # the consumer is a member of its group
        self._join_wanted = False  # keep fetching without waits until it is
        self._task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._client: ConfluentConsumer | None = None
        self._client_lock = threading.Lock()  # both threads may be the first to connect
        self._subscribed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # One thread fetches (consume blocks it), one commits: a commit never waits for a fetch.
        self._fetcher = ThreadPoolExecutor(1, thread_name_prefix=f"evkit-kafka-fetch-{topic}")
        self._committer = ThreadPoolExecutor(1, thread_name_prefix=f"evkit-kafka-commit-{topic}")

    def __repr__(self) -> str:
        return f"<Kafka consumer topic={self.topic!r} group={self.group!r} at {self.bootstrap_servers}>"

    # ------------------------------------------------------------------ waits

    async def take(self, workflow_id: str) -> KafkaMessage:
        """Wait for the next message for a wait of run ``workflow_id``."""
        self._loop = asyncio.get_running_loop()
        future: asyncio.Future[KafkaMessage] = self._loop.create_future()
        self._waiters.append((workflow_id, future))
        self._hand_out()
        if not future.done():
            self._ensure_task()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                message = future.result()  # handed over just as the wait was cancelled
                self._held.pop((message.partition, message.offset), None)
                self._held_messages.pop((message.partition, message.offset), None)
                self._requeue([message])
                self._hand_out()
            self._waiters = deque(w for w in self._waiters if w[1] is not future)
            raise

    def release_run(self, workflow_id: str) -> None:
        """Messages run ``workflow_id``'s waits took and did not checkpoint are free again."""
        taken = [key for key, wid in self._held.items() if wid == workflow_id]
        if not taken:
            return
        for key in taken:
            del self._held[key]
        self._spawn(self._recheck(taken), "release")

    async def _recheck(self, keys: list[tuple[int, int]]) -> None:
        # The run may have checkpointed some of them before it ended (a failed commit):
        # those are done, the others go back to the next waits.
        messages = [self._message_of(key) for key in keys]
        taken = await self._store.checkpointed_sources([m.source_id for m in messages])
        self._requeue([m for m in messages if m.source_id not in taken])
        for message in messages:
            if message.source_id in taken:
                self._mark_done(message)
        self._hand_out()
        if taken:
            await self._commit_targets()

    def _message_of(self, key: tuple[int, int]) -> KafkaMessage:
        return self._held_messages.pop(key)

    def _requeue(self, messages: list[KafkaMessage]) -> None:
        for message in sorted(messages, key=lambda m: (m.partition, m.offset), reverse=True):
            if message.partition in self._partitions:  # else it is re-read when reassigned
                self._ready.appendleft(message)
                self._queued.add((message.partition, message.offset))

    def _hand_out(self) -> None:
        while self._ready and self._waiters:
            workflow_id, future = self._waiters.popleft()
            if future.done():
                continue
            message = self._ready.popleft()
            key = (message.partition, message.offset)
            self._queued.discard(key)
            self._held[key] = workflow_id
            self._held_messages[key] = message
            future.set_result(message)

    def _wanted(self) -> int:
        # An upper bound (a waiter whose wait ended leaves when its task handles it): the
        # exact count would cost a pass over up to N waiters per fetch.
        return len(self._waiters)

    def _spawn(self, coro: object, what: str) -> None:
        assert asyncio.iscoroutine(coro)
        task = asyncio.get_running_loop().create_task(coro, name=f"evkit-kafka-{what}:{self.topic}")
        self._side_tasks.add(task)
        task.add_done_callback(self._side_done)

    def _side_done(self, task: asyncio.Task[None]) -> None:
        self._side_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%r: %s", self, task.exception(), exc_info=task.exception())

    # ------------------------------------------------------------------ fetching

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"evkit-kafka:{self.topic}:{self.group}"
            )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[_Fetched] | None = None
        while True:
            if pending is None:
                wanted = self._wanted()
                if not (wanted or (self._join_wanted and not self._joined.is_set())):
                    return
                pending = loop.run_in_executor(self._fetcher, self._fetch, min(max(wanted, 1), _MAX_BATCH))
            try:
                fetched = await pending
            except Exception as exc:  # KafkaException, a store error: every wait must hear of it
                self._fail(exc)
                return
            # Fetch the next batch while this one is handed out: the loop is then busy with
            # the waits, and the fetch thread with librdkafka and the store check. A batch
            # fetched is always handed on (into the ready queue), even if no wait wants it.
            more = self._wanted() - len(self._ready) - len(fetched.messages)
            pending = None
            if more > 0:
                pending = loop.run_in_executor(self._fetcher, self._fetch, min(more, _MAX_BATCH))
            for error in fetched.errors:
                if error.fatal():
                    self._fail(RuntimeError(str(error)))
                else:
                    logger.warning("%r: %s", self, error)
            messages, taken = self._accept(fetched.messages), fetched.taken
            if taken:
                # Checkpointed before a crash or a rebalance but never committed: commit, never redeliver.
                logger.info("%r: %d message(s) already checkpointed, not delivered again", self, len(taken))
                for message in messages:
                    if message.source_id in taken:
                        self._mark_done(message)
                self._commit_targets().add_done_callback(self._log_failed_commit)
                messages = [message for message in messages if message.source_id not in taken]
            self._ready.extend(messages)
            self._queued.update((message.partition, message.offset) for message in messages)
            self._hand_out()

    def _accept(self, fetched: list[KafkaMessage]) -> list[KafkaMessage]:
        """The messages of a fetch no wait here has (re-reads after a rebalance skipped)."""
        messages = []
        siblings = self._siblings(self)
        for message in fetched:
            partition = self._partitions.get(message.partition)
            if partition is None:  # revoked while this fetch was under way
                continue
            key = (message.partition, message.offset)
            partition.read(message.offset)
            if key in self._held or key in self._queued or not partition.is_open(message.offset):
                continue  # a wait has it, or it is checkpointed already: read again after a rebalance
            if siblings and any(key in other._held for other in siblings):
                continue  # a wait of another member here has it (the partition moved)
            messages.append(message)
        return messages

    def _record(self, msg: Message, partition: int, offset: int) -> KafkaMessage:
        kind, millis = msg.timestamp()
        headers = cast("list[tuple[str, object]] | None", msg.headers())  # the stubs say list[str]
        return KafkaMessage(
            topic=self.topic,
            partition=partition,
            offset=offset,
            key=_as_bytes(msg.key()),
            value=_as_bytes(msg.value()),
            headers=tuple((name, _as_bytes(value)) for name, value in headers) if headers else (),
            timestamp_ms=millis if kind else None,
            group=self.group,
            bootstrap_servers=self.bootstrap_servers,
            config=self.config,
        )

    def _fetch(self, wanted: int) -> _Fetched:
        """On the fetch thread: the next messages as records, and which are checkpointed.

        It takes what librdkafka has buffered, else waits briefly for one message.
        """
        client = self._connect()
        if not self._subscribed:
            client.subscribe(
                [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
            )
            self._subscribed = True
        batch = client.consume(wanted, timeout=0)
        if not batch:
            batch = client.consume(1, timeout=_IDLE_WAIT_SECONDS)
            if batch and wanted > 1:
                batch += client.consume(wanted - 1, timeout=0)
        messages, errors = [], []
        for msg in batch:
            error = msg.error()
            if error is not None:
                errors.append(error)
                continue
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None
            assert offset is not None
            messages.append(self._record(msg, partition, offset))
        taken: set[str] = set()
        if messages:
            # Committed checkpoints suffice: one still queued is of a message some wait of
            # this engine holds, and the loop skips those (_accept).
            taken = self._store.durable_checkpointed_sources([m.source_id for m in messages]).result()
        return _Fetched(messages, errors, taken)

    def _connect(self) -> ConfluentConsumer:
        with self._client_lock:
            return self._client or self._make_client()

    def _make_client(self) -> ConfluentConsumer:
        try:
            from confluent_kafka import Consumer
        except ImportError as exc:  # pragma: no cover - confluent-kafka is in the test environment
            raise ImportError("KafkaListener needs confluent-kafka: pip install 'evkit[kafka]'.") from exc
        settings = {
            **DEFAULT_CONFIG,
            **dict(self.config),
            **FIXED_CONFIG,
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": self.group,
        }
        self._client = Consumer(settings, logger=logger)
        return self._client

    # Rebalance callbacks run on the fetch thread, inside consume(): they only post to the
    # loop. The fetch's result is posted after them, so the loop sees the new assignment first.
    def _on_assign(self, client: ConfluentConsumer, partitions: list[TopicPartition]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._assigned, [tp.partition for tp in partitions])

    def _on_revoke(self, client: ConfluentConsumer, partitions: list[TopicPartition]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._revoked, [tp.partition for tp in partitions])

    def _assigned(self, partitions: list[int]) -> None:
        logger.info("%r: assigned partitions %s", self, partitions)
        self._joined.set()
        for partition in partitions:
            self._partitions.setdefault(partition, PartitionCommits())

    def _revoked(self, partitions: list[int]) -> None:
        # Another member may own them now: never commit them from here (our commit could
        # be older than its), drop what no wait took (the new owner reads it again).
        logger.info("%r: partitions %s revoked", self, partitions)
        gone = set(partitions)
        for partition in gone:
            self._partitions.pop(partition, None)
        self._ready = deque(m for m in self._ready if m.partition not in gone)
        self._queued = {key for key in self._queued if key[0] not in gone}

    def _fail(self, exc: BaseException) -> None:
        waiters, self._waiters = self._waiters, deque()
        for _, future in waiters:
            if not future.done():
                error = RuntimeError(
                    f"Reading Kafka topic {self.topic!r} (group {self.group!r}) at "
                    f"{self.bootstrap_servers} failed: {exc}"
                )
                error.__cause__ = exc
                future.set_exception(error)

    # ------------------------------------------------------------------ committing

    def _mark_done(self, message: KafkaMessage) -> bool:
        """Record the checkpoint; False if this consumer does not track the message."""
        key = (message.partition, message.offset)
        self._held.pop(key, None)
        self._held_messages.pop(key, None)
        partition = self._partitions.get(message.partition)
        if partition is None or not (
            partition.is_open(message.offset) or message.offset <= partition.done_max
        ):
            return False
        partition.done(message.offset)
        return True

    def commit(self, message: KafkaMessage) -> Awaitable[None]:
        """Commit after ``message``'s checkpoint, by the rule of :class:`PartitionCommits`.

        Returns what to await: the commit round that covers the message (a future), or,
        for a message this consumer did not read, a coroutine that commits it alone.

        Raises:
            RuntimeError: The broker refused the commit, or the consumer could not join
                its group to make it (raised by the awaitable).
        """
        self._loop = asyncio.get_running_loop()
        if self._mark_done(message):
            return self._commit_targets(self._partitions[message.partition])
        return self._commit_elsewhere(message)

    async def _commit_elsewhere(self, message: KafkaMessage) -> None:
        # Not read by this consumer: a message checkpointed before a restart, or of a
        # partition another member owns now.
        if await self._commit_untracked(message) or self._joined.is_set():
            return
        # The group refuses commits from a non-member while it has members (the killed
        # process's, until its session times out): join, then commit as a member.
        self._join_wanted = True
        self._ensure_task()
        try:
            async with asyncio.timeout(_JOIN_TIMEOUT_SECONDS):
                await self._joined.wait()
        except TimeoutError:
            raise RuntimeError(
                f"Committing {message.source_id} at {self.bootstrap_servers}: the consumer did not "
                f"join group {self.group!r} within {_JOIN_TIMEOUT_SECONDS:.0f} s. The message is "
                "checkpointed: resuming the run commits it again."
            ) from None
        finally:
            self._join_wanted = False
        await self.commit(message)

    def _commit_targets(self, partition: PartitionCommits | None = None) -> asyncio.Future[None]:
        """A future done when a commit round that starts after this call has ended.

        That round covers what is checkpointed now (in ``partition``, or in any). Many
        waits finish together (one group commit checkpoints them all): their commits share
        one round, one synchronous commit of every partition's target. With nothing to
        commit (an earlier message of the partition is in flight, or a round under way
        covers it) the future is done already.
        """
        loop = asyncio.get_running_loop()
        partitions = self._partitions.values() if partition is None else (partition,)
        if not any(p.target() > p.committed for p in partitions):
            if self._no_round is None:
                self._no_round = loop.create_future()
                self._no_round.set_result(None)
            return self._no_round
        waiter: asyncio.Future[None] = loop.create_future()
        self._round_waiters.append(waiter)
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(
                self._flush(), name=f"evkit-kafka-commit:{self.topic}:{self.group}"
            )
        return waiter

    def _log_failed_commit(self, round_: asyncio.Future[None]) -> None:
        # A round nobody waits for (a re-read message the store already has): its error is logged.
        if not round_.cancelled() and round_.exception() is not None:
            logger.error("%r: %s", self, round_.exception(), exc_info=round_.exception())

    async def _flush(self) -> None:
        while self._round_waiters:
            waiters, self._round_waiters = self._round_waiters, []
            try:
                await self._commit_due()
            except Exception as exc:
                for waiter in waiters:
                    if not waiter.done():  # a cancelled caller's is
                        waiter.set_exception(exc)
            else:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)

    async def _commit_due(self) -> None:
        from confluent_kafka import TopicPartition

        due = {no: t for no, p in self._partitions.items() if (t := p.target()) > p.committed}
        if not due:
            return
        # Marked before the commit is sent (the commit thread runs them in order), so no
        # later commit of a partition can carry a lower offset.
        previous = {no: self._partitions[no].committed for no in due}
        for no, target in due.items():
            self._partitions[no].committed = target
        offsets = [TopicPartition(self.topic, no, target) for no, target in sorted(due.items())]
        if not await self._send_commit(offsets):
            for no, target in due.items():
                partition = self._partitions.get(no)
                if partition is not None and partition.committed == target:
                    partition.committed = previous[no]

    async def _commit_untracked(self, message: KafkaMessage) -> bool:
        """Commit a message this consumer did not read; False if the group refused it."""
        from confluent_kafka import TopicPartition

        loop = asyncio.get_running_loop()
        async with self._commit_lock:
            (current,) = await loop.run_in_executor(
                self._committer, self._committed, TopicPartition(self.topic, message.partition)
            )
            start = max(current.offset, 0)
            if start > message.offset:
                return True  # committed already (by us before a crash, or by the partition's owner)
            # Committing offset + 1 is safe only if every message between the committed offset
            # and this one is checkpointed too; else the consumer commits it when it reads past.
            between = range(start, message.offset)
            if len(between) > _MAX_GAP_CHECK:
                return True
            ids = [source_id_of(self.group, self.topic, message.partition, o) for o in between]
            if ids and len(await self._store.checkpointed_sources(ids)) != len(ids):
                logger.info(
                    "%r: %s is checkpointed; its offset is committed once the messages before it are",
                    self,
                    message.source_id,
                )
                return True
            target = message.offset + 1
            partition = self._partitions.get(message.partition)
            if partition is not None:
                if partition.committed >= target:
                    return True
                previous, partition.committed = partition.committed, target
            if not await self._send_commit([TopicPartition(self.topic, message.partition, target)]):
                if partition is not None and partition.committed == target:
                    partition.committed = previous
                return False
            return True

    def _committed(self, tp: TopicPartition) -> list[TopicPartition]:
        return self._connect().committed([tp], timeout=10)

    async def _send_commit(self, offsets: list[TopicPartition]) -> bool:
        """Commit synchronously on the commit thread; False when a rebalance refused it."""
        from confluent_kafka import KafkaError, KafkaException

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._committer, self._commit_sync, offsets)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            code = error.code() if isinstance(error, KafkaError) else None
            if code in _rebalance_errors():
                # The partition moved: the store check keeps its checkpointed messages from
                # being delivered again, and its new owner commits them.
                logger.info("%r: commit of %s refused during a rebalance: %s", self, offsets, exc)
                return False
            where = ", ".join(f"partition {tp.partition} offset {tp.offset}" for tp in offsets)
            raise RuntimeError(
                f"Committing Kafka topic {self.topic!r} (group {self.group!r}) {where} at "
                f"{self.bootstrap_servers} failed: {exc}. The messages are checkpointed: resuming "
                "the run commits them again."
            ) from exc
        return True

    def _commit_sync(self, offsets: list[TopicPartition]) -> None:
        self._connect().commit(offsets=offsets, asynchronous=False)

    # ------------------------------------------------------------------ closing

    def close_nowait(self) -> None:
        """Stop fetching; the consumer is closed on its fetch thread."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        for side in list(self._side_tasks):
            side.cancel()
        committing = self._committer.submit(lambda: None)

        # The client is closed on the fetch thread once the commits already sent are done:
        # librdkafka must not close a handle another thread is committing with.
        def close_after_commits() -> None:
            committing.result()
            self._close_client()

        self._fetcher.submit(close_after_commits)
        self._fetcher.shutdown(wait=False)
        self._committer.shutdown(wait=False)

    async def aclose(self) -> None:
        """Stop fetching, then close the consumer (it leaves its group)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        tasks = [t for t in (task, self._flusher, *self._side_tasks) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._committer, lambda: None)  # commits in flight end first
        await loop.run_in_executor(self._fetcher, self._close_client)
        self._fetcher.shutdown(wait=False)
        self._committer.shutdown(wait=False)

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


async def _nothing() -> None:
    """Nothing to commit."""


def _as_bytes(value: object) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode()


def _rebalance_errors() -> frozenset[int]:
    """Error codes of a commit refused because the group is rebalancing or moved on."""
    from confluent_kafka import KafkaError

    return frozenset(
        {
            KafkaError.REBALANCE_IN_PROGRESS,
            KafkaError.ILLEGAL_GENERATION,
            KafkaError.UNKNOWN_MEMBER_ID,
            KafkaError._ASSIGNMENT_LOST,
            KafkaError._NO_OFFSET,
        }
    )
