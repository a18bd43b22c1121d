"""Redis Streams as an event source: read through a consumer group, XACK after the checkpoint.

It owns one reader per (url, stream, group, consumer) on the engine's loop, which hands
entries to the waits, re-delivers entries a crash left unacknowledged, and skips (and
acknowledges) entries the store already has. It never acknowledges before the checkpoint.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar, final
from urllib.parse import urlsplit, urlunsplit

from evkit.context import get_event_context
from evkit.listeners.base import NOTHING_TO_DESCRIBE, EventListener, WaitDescription
from evkit.services import Service, ServiceRegistry
from evkit.store.service import StoreReads

if TYPE_CHECKING:
    from redis.asyncio import Redis

T = TypeVar("T")
logger = logging.getLogger("evkit.redis")

_BLOCK_MS = 1_000  # how long one XREADGROUP waits for new entries before rescanning
_PAGE = 100  # entries per page when scanning the pending entries list
_MAX_BACKOFF_SECONDS = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEntry:
    """One stream entry, delivered to an event step as its value.

    Attributes:
        stream: The stream's key.
        group: The consumer group it was read through.
        consumer: The consumer name it was read as.
        entry_id: The entry's id in the stream, e.g. ``"1718000000000-0"``.
        fields: The entry's fields (decoded as UTF-8).
        url: The Redis URL (not shown in the repr: it may hold a password).
    """

    stream: str
    group: str
    consumer: str
    entry_id: str
    fields: dict[str, str]
    url: str = field(repr=False)

    @property
    def source_id(self) -> str:
        """The id stored with the checkpoint: ``redis:<stream>:<group>:<entry id>``."""
        return f"redis:{self.stream}:{self.group}:{self.entry_id}"


class RedisStreamListener(EventListener):
    """Waits for the next entry of a Redis stream, read through a consumer group.

    ``workflow.wait_for_event(RedisStreamListener, "redis://127.0.0.1:6379/0", "orders",
    "evkit", "worker-1")``: the step's value is a :class:`StreamEntry`. The group is
    created (reading from the stream's start) if it does not exist. The entry is
    acknowledged with XACK only after its event is checkpointed; after a crash, entries
    read but not acknowledged are delivered again, and entries already checkpointed are
    acknowledged without being delivered twice. Keep the consumer name stable: it is how
    a resumed run finds the entries its crashed predecessor read.
    """

    def __init__(self) -> None:
        self._taken: StreamEntry | None = None

    @classmethod
    def describe_wait(
        cls, args: tuple[object, ...], kwargs: Mapping[str, object], *, now: float
    ) -> WaitDescription:
        """The stream the wait reads, which is its label."""
        stream = kwargs.get("stream", args[1] if len(args) > 1 else None)
        return WaitDescription(label=stream) if isinstance(stream, str) and stream else NOTHING_TO_DESCRIBE

    async def poll_for_event(  # type: ignore[override]
        self, url: str, stream: str, group: str, consumer: str
    ) -> StreamEntry:
        """Return the next entry for this consumer (re-delivered ones first).

        Raises:
            TypeError: An argument is not a non-empty str.
            ImportError: redis is not installed (``pip install 'evkit[redis]'``).
            RuntimeError: Redis refused the read (the message names the stream).
        """
        arguments: dict[str, object] = {"url": url, "stream": stream, "group": group, "consumer": consumer}
        for name, value in arguments.items():
            if not isinstance(value, str) or not value:
                raise TypeError(f"RedisStreamListener: `{name}` must be a non-empty str, got {value!r}.")
        context = get_event_context()
        readers = redis_streams(context.services)
        self._taken = await readers.reader(url, stream, group, consumer).take(context.workflow_id)
        return self._taken

    async def event_checkpointed(self, event: object) -> None:
        """Acknowledge the entry (XACK), now that its event is checkpointed.

        Idempotent: acknowledging twice is harmless, and the engine calls it again after a
        crash between the checkpoint and the commit.
        """
        if isinstance(event, StreamEntry):  # not the `default` of a timed-out wait
            await redis_streams(get_event_context().services).ack(event)

    def source_id(self, event: object) -> str | None:
        """``redis:<stream>:<group>:<entry id>``, stored with the checkpoint."""
        return event.source_id if isinstance(event, StreamEntry) else None

    async def poll_cancelled(  # type: ignore[override]
        self, url: str, stream: str, group: str, consumer: str
    ) -> None:
        """Hand the entry this instance read, unacknowledged, to the next wait of its consumer.

        That happens to a losing branch of ``wait_for_any`` whose poll read an entry
        after the winner's event: the entry stays pending in Redis.
        """
        entry, self._taken = self._taken, None
        if entry is not None:
            redis_streams(get_event_context().services).reader(url, stream, group, consumer).give_back(entry)


@final
class RedisStreams(Service):
    """The engine's Redis service: one client per URL and one reader per consumer.

    Lives in the engine's services; the engine calls :meth:`release_run` when a run ends
    and :meth:`aclose` when it closes.
    """

    def __init__(self, store: StoreReads) -> None:
        self._store = store
        self._clients: dict[str, Redis] = {}
        self._readers: dict[tuple[str, str, str, str], _Reader] = {}

    def client(self, url: str) -> Redis:
        """The client for ``url`` (made on first use).

        Raises:
            ImportError: redis is not installed.
        """
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = make_client(url)
        return client

    def reader(self, url: str, stream: str, group: str, consumer: str) -> _Reader:
        """The reader of this consumer (made on first use)."""
        key = (url, stream, group, consumer)
        reader = self._readers.get(key)
        if reader is None:
            reader = self._readers[key] = _Reader(self, url, stream, group, consumer)
        return reader

    async def ack(self, entry: StreamEntry) -> None:
        """XACK ``entry``, then stop holding it."""
        await self.client(entry.url).xack(entry.stream, entry.group, entry.entry_id)
        reader = self._readers.get((entry.url, entry.stream, entry.group, entry.consumer))
        if reader is not None:
            reader.release(entry.entry_id)

    async def checkpointed(self, source_ids: Sequence[str]) -> set[str]:
        """Which of ``source_ids`` an event step of this store has checkpointed."""
        return await self._store.checkpointed_sources(source_ids)

    def release_run(self, workflow_id: str) -> None:
        """The run ended: entries its waits took but did not checkpoint are free again."""
        for reader in self._readers.values():
            reader.release_run(workflow_id)

    def close_nowait(self) -> None:
        """Like :meth:`aclose`, without awaiting (the runtime closing on its own loop).

        The readers are cancelled now; the clients are closed by a task of this loop.
        """
        readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            reader.cancel()
        clients, self._clients = list(self._clients.values()), {}
        if clients:
            closing = asyncio.get_running_loop().create_task(
                _close_clients(clients), name="evkit-redis-close"
            )
            _closing_tasks.add(closing)
            closing.add_done_callback(_closing_tasks.discard)

    async def aclose(self) -> None:
        """Stop the readers and close the clients (pending entries stay pending in Redis)."""
        readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            await reader.aclose()
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


def make_client(url: str) -> Redis:
    """An asyncio Redis client for ``url`` whose replies are decoded as UTF-8.

    Raises:
        ImportError: redis is not installed (``pip install 'evkit[redis]'``).
    """
    try:
        import redis
        from redis.asyncio import Redis
    except ImportError as exc:  # pragma: no cover - redis is in the test environment
        raise ImportError("RedisStreamListener needs redis: pip install 'evkit[redis]'.") from exc
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # redis < 7 has no DriverInfo and reads no package metadata
        return Redis.from_url(url, decode_responses=True)
    # Without it, redis-py looks its own version up in the package metadata (file system
    # calls) for every new connection, on the event loop.
    info = DriverInfo(name="redis-py", lib_version=redis.__version__)
    return Redis.from_url(url, decode_responses=True, driver_info=info)


def redis_streams(services: ServiceRegistry) -> RedisStreams:
    """The engine's :class:`RedisStreams` service, made on first use."""
    return services.get_or_add(RedisStreams, lambda: RedisStreams(services.require(StoreReads)))


class _Reader:
    """Hands the entries of one consumer to the waits of this engine, oldest wait first.

    Entries it handed to a wait are *held* until they are acknowledged (or the run
    ends), so a rescan of the pending entries list never gives them to a second wait.
    """

    def __init__(self, service: RedisStreams, url: str, stream: str, group: str, consumer: str) -> None:
        self._service = service
        self.url, self.stream, self.group, self.consumer = url, stream, group, consumer
        self._waiters: deque[tuple[str, asyncio.Future[StreamEntry]]] = deque()
        self._ready: deque[StreamEntry] = deque()  # read and pending, no wait took it yet
        self._held: dict[str, str] = {}  # entry id -> workflow id of the wait that took it
        self._task: asyncio.Task[None] | None = None
        self._group_ready = False

    def __repr__(self) -> str:
        return f"<RedisStreams reader {self.stream!r} group={self.group!r} consumer={self.consumer!r}>"

    async def take(self, workflow_id: str) -> StreamEntry:
        """Wait for the next entry for a wait of run ``workflow_id``."""
        future: asyncio.Future[StreamEntry] = asyncio.get_running_loop().create_future()
        self._waiters.append((workflow_id, future))
        self._hand_out()
        if not future.done():
            self._ensure_task()
        try:
            return await future
        except asyncio.CancelledError:
            self._drop_waiter(future)
            if future.done() and not future.cancelled() and future.exception() is None:
                self.give_back(future.result())  # handed over just as the wait was cancelled
            raise

    def give_back(self, entry: StreamEntry) -> None:
        """A wait took ``entry`` but will not checkpoint it: the next wait gets it first."""
        self._held.pop(entry.entry_id, None)
        self._ready.appendleft(entry)
        self._hand_out()

    def release(self, entry_id: str) -> None:
        """The entry is acknowledged: stop holding it."""
        self._held.pop(entry_id, None)

    def release_run(self, workflow_id: str) -> None:
        """Stop holding the entries that run ``workflow_id``'s waits took."""
        self._held = {entry_id: wid for entry_id, wid in self._held.items() if wid != workflow_id}

    def cancel(self) -> asyncio.Task[None] | None:
        """Stop reading now; returns the cancelled task, if one ran."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    async def aclose(self) -> None:
        """Stop reading; waits still waiting are cancelled with the engine anyway."""
        task = self.cancel()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    # ------------------------------------------------------------------ dispatching

    def _hand_out(self) -> None:
        while self._ready and self._waiters:
            workflow_id, future = self._waiters.popleft()
            if future.done():
                continue
            entry = self._ready.popleft()
            self._held[entry.entry_id] = workflow_id
            future.set_result(entry)

    def _drop_waiter(self, future: asyncio.Future[StreamEntry]) -> None:
        self._waiters = deque(w for w in self._waiters if w[1] is not future)

    def _wanted(self) -> int:
        return sum(1 for _, future in self._waiters if not future.done())

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"evkit-redis:{self.stream}:{self.group}:{self.consumer}"
            )

    async def _run(self) -> None:
        from redis import exceptions

        backoff = 0.1
        while self._wanted():
            try:
                entries = await self._fetch(self._wanted())
            except (exceptions.ConnectionError, exceptions.TimeoutError) as exc:
                # The wait goes on (its own timeout bounds it); Redis may come back.
                logger.warning("%r: %s; retrying in %.1f s", self, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
                continue
            except exceptions.ResponseError as exc:
                if str(exc).startswith("NOGROUP"):
                    self._group_ready = False  # the group was deleted: create it again
                    continue
                self._fail(exc)
                return
            except Exception as exc:
                self._fail(exc)
                return
            backoff = 0.1
            self._ready.extend(entries)
            self._hand_out()

    def _fail(self, exc: Exception) -> None:
        waiters, self._waiters = self._waiters, deque()
        for _, future in waiters:
            if not future.done():
                error = RuntimeError(
                    f"Reading Redis stream {self.stream!r} (group {self.group!r}, consumer "
                    f"{self.consumer!r}) at {_redact(self.url)} failed: {exc}"
                )
                error.__cause__ = exc
                future.set_exception(error)

    async def _fetch(self, wanted: int) -> list[StreamEntry]:
        client = self._service.client(self.url)
        if not self._group_ready:
            await self._create_group(client)
        candidates = await self._unheld_pending(client, wanted)
        if not candidates:
            reply = await client.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=wanted, block=_BLOCK_MS
            )
            candidates = _entries(reply, self.stream)
        if not candidates:
            return []
        gone = [entry_id for entry_id, fields in candidates if not fields]
        if gone:
            # Trimmed from the stream before anyone checkpointed them: nothing to deliver.
            logger.warning(
                "%r: entries %s were deleted from the stream; acknowledged, not delivered", self, gone
            )
            await client.xack(self.stream, self.group, *gone)
        entries = [
            StreamEntry(
                stream=self.stream,
                group=self.group,
                consumer=self.consumer,
                entry_id=entry_id,
                fields=dict(fields),
                url=self.url,
            )
            for entry_id, fields in candidates
            if fields
        ]
        if not entries:
            return []
        taken = await self._service.checkpointed([entry.source_id for entry in entries])
        if taken:
            # Checkpointed before a crash but never acknowledged: acknowledge, never redeliver.
            done = [entry.entry_id for entry in entries if entry.source_id in taken]
            logger.info("%r: acknowledging entries %s checkpointed before a restart", self, done)
            await client.xack(self.stream, self.group, *done)
        return [entry for entry in entries if entry.source_id not in taken]

    async def _create_group(self, client: Redis) -> None:
        from redis import exceptions

        try:
            await client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except exceptions.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise
        self._group_ready = True

    async def _unheld_pending(self, client: Redis, wanted: int) -> list[tuple[str, dict[str, str]]]:
        """Entries pending for this consumer that no wait here holds.

        That is what a crash (or a cancelled read) left behind. Read with XREADGROUP from
        id 0, page by page.
        """
        found: list[tuple[str, dict[str, str]]] = []
        start = "0"
        queued = {entry.entry_id for entry in self._ready}
        while len(found) < wanted:
            reply = await client.xreadgroup(self.group, self.consumer, {self.stream: start}, count=_PAGE)
            page = _entries(reply, self.stream)
            found.extend(
                (entry_id, fields)
                for entry_id, fields in page
                if entry_id not in self._held and entry_id not in queued
            )
            if len(page) < _PAGE:
                break
            start = page[-1][0]
        return found[:wanted] if len(found) > wanted else found


_closing_tasks: set[asyncio.Task[None]] = set()  # referenced until done (the loop keeps weak refs)


async def _close_clients(clients: list[Redis]) -> None:
    for client in clients:
        await client.aclose()


def _entries(reply: object, stream: str) -> list[tuple[str, dict[str, str]]]:
    """The ``(id, fields)`` pairs of ``stream`` in an XREADGROUP reply (RESP2 or RESP3)."""
    if not reply:
        return []
    if isinstance(reply, Mapping):
        raw = reply.get(stream) or []
        items = raw[0] if raw and isinstance(raw[0], list) and raw[0] and isinstance(raw[0][0], list) else raw
    else:
        items = next((entries for name, entries in reply if name == stream), [])  # type: ignore[attr-defined]
    return [(str(entry_id), dict(fields or {})) for entry_id, fields in items]


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
