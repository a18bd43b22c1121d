"""The pure parts of the Kafka source: the message record, argument checks, the commit rule.

Used by :mod:`evkit.listeners.kafka`, which owns the consumers. This module does no I/O,
needs no loop and does not import confluent-kafka.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

# Settings evkit owns: committing is its job, and only after the checkpoint.
FIXED_CONFIG: dict[str, object] = {"enable.auto.commit": False, "enable.auto.offset.store": False}
DEFAULT_CONFIG: dict[str, object] = {"auto.offset.reset": "earliest"}

ConfigItems = tuple[tuple[str, object], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaMessage:
    """One Kafka message, delivered to an event step as its value (picklable).

    Attributes:
        topic: The topic it was read from.
        partition: Its partition.
        offset: Its offset in the partition.
        key: The key, as bytes (``None`` if it has none).
        value: The value, as bytes (``None`` for a tombstone).
        headers: The headers, as ``(name, value)`` pairs in order.
        timestamp_ms: The message's timestamp in milliseconds since the epoch, or ``None``
            if the broker gave none (:attr:`timestamp` has it as a datetime).
        group: The consumer group it was read through.
        bootstrap_servers: The brokers it was read from.
        config: The extra consumer settings of the wait (not shown in the repr: they
            may hold credentials).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    # An int, not a datetime: pickling a datetime (and its tzinfo) costs more than the
    # rest of the record together, and every message is pickled into its checkpoint.
    timestamp_ms: int | None = None
    group: str
    bootstrap_servers: str
    config: ConfigItems = field(default=(), repr=False)

    @property
    def timestamp(self) -> dt.datetime | None:
        """The message's timestamp as a UTC datetime (``None`` if the broker gave none)."""
        if self.timestamp_ms is None:
            return None
        return dt.datetime.fromtimestamp(self.timestamp_ms / 1000, tz=dt.UTC)

    @property
    def text(self) -> str:
        """The value decoded as UTF-8 (``""`` for a tombstone).

        Raises:
            UnicodeDecodeError: The value is not UTF-8.
        """
        return (self.value or b"").decode("utf-8")

    def json(self) -> object:
        """The value parsed as JSON.

        Raises:
            ValueError: The value is not JSON (``json.JSONDecodeError`` is a ValueError).
        """
        return json.loads(self.value or b"")

    @property
    def source_id(self) -> str:
        """The id stored with the checkpoint: ``kafka:<group>:<topic>:<partition>:<offset>``."""
        return source_id_of(self.group, self.topic, self.partition, self.offset)


def source_id_of(group: str, topic: str, partition: int, offset: int) -> str:
    """``kafka:<group>:<topic>:<partition>:<offset>``: a message's id in the store."""
    return f"kafka:{group}:{topic}:{partition}:{offset}"


_CHECKED: dict[tuple[object, ...], ConfigItems] = {}  # arguments already checked (many waits share them)


def checked_config(topic: object, group: object, bootstrap_servers: object, config: object) -> ConfigItems:
    """:func:`consumer_config_items`, remembered for arguments already checked.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: ``config`` sets what evkit owns.
    """
    try:
        key = (
            topic,
            group,
            bootstrap_servers,
            tuple(config.items()) if isinstance(config, Mapping) else config,
        )
        items = _CHECKED.get(key)
    except TypeError:  # an unhashable setting: check it every time
        return consumer_config_items(topic, group=group, bootstrap_servers=bootstrap_servers, config=config)
    if items is None:
        items = consumer_config_items(topic, group=group, bootstrap_servers=bootstrap_servers, config=config)
        if len(_CHECKED) < 1_000:
            _CHECKED[key] = items
    return items


def consumer_config_items(
    topic: object, *, group: object, bootstrap_servers: object, config: object
) -> ConfigItems:
    """Check a wait's arguments; returns the extra settings as sorted, hashable pairs.

    Raises:
        TypeError: An argument has the wrong type.
        ValueError: ``config`` sets what evkit owns.
    """
    arguments = {"topic": topic, "group": group, "bootstrap_servers": bootstrap_servers}
    for name, value in arguments.items():
        if not isinstance(value, str) or not value:
            raise TypeError(f"KafkaListener: `{name}` must be a non-empty str, got {value!r}.")
    if config is None:
        return ()
    if not isinstance(config, Mapping) or not all(isinstance(key, str) for key in config):
        raise TypeError(f"KafkaListener: `config` must be a dict of str keys or None, got {config!r}.")
    for key in ("group.id", "bootstrap.servers"):
        if key in config:
            argument = "group" if key == "group.id" else "bootstrap_servers"
            raise ValueError(
                f"KafkaListener: `config` sets {key!r}; pass it as the `{argument}=` argument instead."
            )
    for key, fixed in FIXED_CONFIG.items():
        if key in config and config[key] not in (fixed, str(fixed).lower()):
            raise ValueError(
                f"KafkaListener: `config` sets {key!r} to {config[key]!r}, but evkit commits offsets "
                "itself, after each checkpoint (that is the exactly-once rule). Remove it from `config`."
            )
    return tuple(sorted((key, value) for key, value in config.items() if key not in FIXED_CONFIG))


class PartitionCommits:
    """What one consumer read from one partition and what it may commit.

    The commit rule: the committed offset is the lowest offset read here and not yet
    checkpointed, or, when every message read is checkpointed, the highest checkpointed
    offset + 1; a commit is sent only if it is higher than the last one. Waits can
    checkpoint out of order (parallel waits, a slow run): committing each message's
    offset + 1 would skip an earlier message still in flight, which a crash would lose.
    """

    def __init__(self) -> None:
        self._open: set[int] = set()  # read, not checkpointed
        self._heap: list[int] = []  # the same offsets, for the minimum (lazy deletion)
        self.done_max = -1
        self.committed = -1  # the highest offset this engine sent to commit (next to read)

    def read(self, offset: int) -> None:
        """The consumer read ``offset`` (a re-read of a finished one changes nothing)."""
        if offset not in self._open and offset > self.done_max:
            self._open.add(offset)
            heapq.heappush(self._heap, offset)

    def is_open(self, offset: int) -> bool:
        """True if ``offset`` was read and is not checkpointed yet."""
        return offset in self._open

    def done(self, offset: int) -> None:
        """``offset`` is checkpointed."""
        self._open.discard(offset)
        self.done_max = max(self.done_max, offset)

    def target(self) -> int:
        """The offset the rule allows to commit now (-1: nothing yet)."""
        while self._heap and self._heap[0] not in self._open:
            heapq.heappop(self._heap)
        if self.done_max < 0:
            return -1
        if self._heap and self._heap[0] <= self.done_max:
            return self._heap[0]  # an earlier message is still in flight
        return self.done_max + 1
