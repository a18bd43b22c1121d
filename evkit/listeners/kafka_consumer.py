"""A ``Consumer`` with the calls of the design document's Kafka example, for use inside a listener.

``from evkit.listeners.kafka_consumer import Consumer`` in place of confluent-kafka's lets
that example run as written: ``poll()`` is awaited on the loop (no thread is blocked on
it), ``commit()`` needs no ``await``. It is a thin handle on the engine's shared
consumers (:mod:`evkit.listeners.kafka`): it owns no connection of its own.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Generator, Mapping, Sequence
from typing import ClassVar

from evkit.context import get_event_context
from evkit.listeners.kafka import KafkaMessage, consumer_config_items, kafka_consumers

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
"""Where ``bootstrap.servers`` comes from when the config does not say."""
DEFAULT_GROUP = "evkit"
"""The ``group.id`` used when the config does not say."""

_commits: set[asyncio.Future[None]] = set()  # referenced until done (the loop keeps weak refs to tasks)


class Consumer:
    """A seed-compatible Kafka consumer for listeners: ``Consumer({'enable.auto.commit': False})``.

    ``bootstrap.servers`` defaults to the ``KAFKA_BOOTSTRAP_SERVERS`` environment variable
    and ``group.id`` to ``"evkit"``; other settings are passed to confluent-kafka, on top
    of :attr:`default_config` (empty unless you set it, e.g. to shorter group timeouts).
    Making one is free (listeners make one per wait): the engine's consumer for the same
    settings does the reading and committing.

    Args:
        config: confluent-kafka consumer settings.

    Raises:
        ValueError: ``config`` turns auto commit on, or no bootstrap servers are known.
    """

    default_config: ClassVar[dict[str, object]] = {}
    """Settings every ``Consumer`` starts from (its own config wins)."""

    def __init__(self, config: Mapping[str, object] | None = None) -> None:
        settings = {**Consumer.default_config, **(config or {})}
        bootstrap = settings.pop("bootstrap.servers", None) or os.environ.get(BOOTSTRAP_ENV)
        if not bootstrap:
            raise ValueError(
                f"Consumer: no `bootstrap.servers` in the config and ${BOOTSTRAP_ENV} is not set. "
                "Pass {'bootstrap.servers': 'host:port', ...} or set the variable."
            )
        self._bootstrap = str(bootstrap)
        self._group = str(settings.pop("group.id", None) or DEFAULT_GROUP)
        self._settings = settings
        self._topic: str | None = None
        consumer_config_items("-", group=self._group, bootstrap_servers=self._bootstrap, config=settings)

    def subscribe(self, topics: str | Sequence[str]) -> None:
        """Read ``topics`` (one topic: a str, or a list of one).

        Raises:
            ValueError: More than one topic was given.
        """
        names = [topics] if isinstance(topics, str) else list(topics)
        if len(names) != 1:
            raise ValueError(f"Consumer.subscribe() reads one topic per wait, got {names!r}.")
        self._topic = names[0]

    async def poll(self, timeout: float | None = None) -> KafkaMessage | None:
        """The next message of the subscribed topic (``None`` if ``timeout`` seconds pass).

        Raises:
            RuntimeError: ``subscribe()`` was not called first, or the consumer failed.
        """
        if self._topic is None:
            raise RuntimeError("Consumer.poll() before subscribe(): call consumer.subscribe(topic) first.")
        items = consumer_config_items(
            self._topic, group=self._group, bootstrap_servers=self._bootstrap, config=self._settings
        )
        context = get_event_context()
        consumer = kafka_consumers(context.services).consumer(
            self._bootstrap, self._group, self._topic, items
        )
        if timeout is None:
            return await consumer.take(context.workflow_id)
        try:
            async with asyncio.timeout(timeout):
                return await consumer.take(context.workflow_id)
        except TimeoutError:
            return None

    def commit(self, message: KafkaMessage, asynchronous: bool = True) -> _Commit:
        """Commit ``message``'s offset by evkit's rule, on the consumer's commit thread.

        The commit starts at once; ``await`` the result to wait for the broker (the
        design document's example does not await it: then a crash before the broker has
        it is covered by the store, which keeps the message from being delivered again).
        ``asynchronous`` is accepted for compatibility: the loop is never blocked either way.

        Raises:
            TypeError: ``message`` is not a message this consumer returned.
        """
        if not isinstance(message, KafkaMessage):
            raise TypeError(f"Consumer.commit() needs a message from poll(), got {message!r}.")
        consumers = kafka_consumers(get_event_context().services)
        consumer = consumers.consumer(message.bootstrap_servers, message.group, message.topic, message.config)
        commit = asyncio.ensure_future(consumer.commit(message))  # a future, or a task of a coroutine
        _commits.add(commit)
        commit.add_done_callback(_commits.discard)
        return _Commit(commit)


class _Commit:
    """A commit under way: awaiting it waits for the broker and raises its error."""

    def __init__(self, commit: asyncio.Future[None]) -> None:
        self._task = commit
        commit.add_done_callback(_retrieve)

    def __await__(self) -> Generator[object, None, None]:
        return self._task.__await__()


def _retrieve(task: asyncio.Future[None]) -> None:
    # A commit nobody awaits must not fail silently.
    if not task.cancelled() and task.exception() is not None:
        import logging

        logging.getLogger("evkit.kafka").error("Kafka commit failed: %s", task.exception())
