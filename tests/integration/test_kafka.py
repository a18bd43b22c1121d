"""KafkaListener against a real Kafka-protocol broker (tansu): delivery through a consumer
group, offsets committed only after the checkpoint and never backwards, and what a crash
leaves behind (read-not-checkpointed messages come again; checkpointed-not-committed ones
are committed, never delivered twice)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import ClassVar

import pytest
from _kafka import FAST_GROUP_CONFIG, SKIP_REASON, KafkaBroker, kafka_available

import evkit
from evkit import codec, workflow
from evkit.listeners.kafka import KafkaListener, KafkaMessage

pytestmark = [pytest.mark.kafka, pytest.mark.skipif(not kafka_available(), reason=SKIP_REASON)]


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    """One real broker for the module (each test uses its own topic and group): starting
    one per test would cost more than the tests themselves."""
    with KafkaBroker() as kafka:
        yield kafka


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A topic (and group) name no other test uses."""
    return f"t-{request.node.name}"[:200]


class Recorder:
    """What the checking listener saw at commit time (listeners themselves are stateless)."""

    at_commit: ClassVar[list[tuple[int, int, int]]] = []
    fail_commits: ClassVar[int] = 0
    bootstrap: ClassVar[str] = ""


@pytest.fixture(autouse=True)
def _clear_recorder(broker: KafkaBroker) -> None:
    Recorder.at_commit = []
    Recorder.fail_commits = 0
    Recorder.bootstrap = broker.bootstrap_servers


class CheckingKafkaListener(KafkaListener):
    """Records, when the commit starts, the group's committed offset and how many
    checkpoints the store holds for the message; can fail its first commits like a lost
    broker."""

    async def event_checkpointed(self, event: KafkaMessage) -> None:  # type: ignore[override]
        committed = await asyncio.to_thread(_committed, event.bootstrap_servers, event.group, event.topic, event.partition)
        checkpoints = await _count(
            f"SELECT count(*) FROM events WHERE source_id = '{event.source_id}' AND checkpointed_at IS NOT NULL"
        )
        Recorder.at_commit.append((event.offset, committed, checkpoints))
        if Recorder.fail_commits > 0:
            Recorder.fail_commits -= 1
            raise ConnectionError("the broker went away before the commit")
        await super().event_checkpointed(event)


def _committed(bootstrap: str, group: str, topic: str, partition: int = 0) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (tp,) = consumer.committed([TopicPartition(topic, partition)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


@workflow.step
def values(*messages: KafkaMessage) -> list[str]:
    return [message.text for message in messages]


def wait_on(broker: KafkaBroker, topic: str, listener: type[KafkaListener] = KafkaListener, **options: object):
    return workflow.wait_for_event(
        listener, topic, group=topic, bootstrap_servers=broker.bootstrap_servers, config=FAST_GROUP_CONFIG, **options
    )


@pytest.mark.slow
async def test_offsets_are_committed_only_after_the_checkpoint_is_durable(
    aruntime: evkit.Runtime, broker: KafkaBroker, topic: str
) -> None:
    await asyncio.to_thread(broker.create_topic, topic)
    await asyncio.to_thread(broker.produce, topic, [b"m0", b"m1", b"m2"])
    waits = [wait_on(broker, topic, CheckingKafkaListener) for _ in range(3)]
    assert await values.step(*waits).run_async(workflow_id="acks") == ["m0", "m1", "m2"]
    # At each commit the offset was not committed past the message, and its checkpoint was durable.
    assert sorted(offset for offset, _, _ in Recorder.at_commit) == [0, 1, 2]
    assert all(committed <= offset and checkpoints == 1 for offset, committed, checkpoints in Recorder.at_commit)
    assert await asyncio.to_thread(_committed, broker.bootstrap_servers, topic, topic) == 3
    sources = await _rows("SELECT source_id FROM events WHERE workflow_id = 'acks' ORDER BY source_id")
    assert sources == [(f"kafka:{topic}:{topic}:0:{n}",) for n in range(3)]


async def _rows(query: str) -> list[tuple[object, ...]]:
    return await asyncio.to_thread(lambda: evkit.sql(query).fetchall())


async def _count(query: str) -> int:
    (value,) = (await _rows(query))[0]
    assert isinstance(value, int)
    return value
