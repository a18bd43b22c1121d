"""Scenario 9: Kafka messages through ``KafkaListener`` waits, checkpointed and committed.

The parent starts a real broker (tansu, as the test suite does) and produces N messages on
3 partitions; each side reads them through its own consumer group. evkit runs N
``KafkaListener`` waits feeding one step; the floor is a plain confluent-kafka consumer
that appends each batch to DuckDB as Arrow (one committed transaction) and then commits
the batch's offsets synchronously. Both join their group with one message first, so the
timing (first message to last commit) leaves the group join out.
"""

from __future__ import annotations

import asyncio
import pickle
import sys
import time
from pathlib import Path

from bench.common import peak_rss_mb, temp_store
from bench.floor import FloorStore, now

PARTITIONS = 3
# tansu holds a JoinGroup for about session.timeout.ms / 2 (23 s with the default), and
# answers a fetch only after fetch.wait.max.ms even when messages are there.
GROUP_CONFIG: dict[str, object] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "fetch.wait.max.ms": 50,
}


def broker() -> object:
    """A started :class:`KafkaBroker` (the test suite's helper: one copy of how to run tansu)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from _kafka import KafkaBroker

    return KafkaBroker()


def available() -> bool:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from _kafka import kafka_available

    return kafka_available()


def produce(bootstrap: str, topic: str, n: int) -> None:
    """Create ``topic`` and produce ``n`` 100-byte messages (batched: the consumers never
    rely on the high watermark, which tansu gets wrong after a batch)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    payload = b"x" * 90
    for i in range(n):
        while True:
            try:
                producer.produce(topic, b"%09d" % i + payload)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)


def evkit_kafka(bootstrap: str, topic: str, n: int) -> dict[str, float]:
    """N ``KafkaListener`` waits feeding one step. Timed from the moment all N wait (the
    gate opens) until the last commit, as scenario 3 is; the whole run is reported too."""
    from bench.listeners import COMMITS, KAFKA_GATE, POLLS, GatedKafkaListener
    from evkit import workflow

    with temp_store() as path:
        runtime = workflow.init(storage=path, loop="thread")

        @workflow.step
        def count(*messages: object) -> int:
            return len(messages)

        def wait() -> object:
            return workflow.wait_for_event(
                GatedKafkaListener, topic, group="evkit", bootstrap_servers=bootstrap, config=GROUP_CONFIG
            )

        runtime.call_soon(lambda engine: KAFKA_GATE.set())
        join_start = time.perf_counter()
        POLLS.reset(1)
        COMMITS.reset(1)
        assert workflow.run(count.step(wait()), workflow_id="join") == 1  # joins the group
        join_s = time.perf_counter() - join_start
        runtime.call_soon(lambda engine: KAFKA_GATE.clear())
        POLLS.reset(n)
        COMMITS.reset(n)
        run_start = time.perf_counter()
        handle = workflow.run_async(count.step(*[wait() for _ in range(n)]), workflow_id="kafka")
        POLLS.reached.wait()
        start = time.perf_counter()
        runtime.call_soon(lambda engine: KAFKA_GATE.set())
        COMMITS.reached.wait()
        elapsed = time.perf_counter() - start
        assert handle.result() == n
        whole_run = time.perf_counter() - run_start
        batches = runtime.engine().queue.batches_written
        workflow.shutdown()
    return {
        "messages_per_s": n / elapsed,
        "total_s": elapsed,
        "whole_run_s": whole_run,
        "join_s": join_s,
        "batches": batches,
        "rss_mb": peak_rss_mb(),
    }


def floor_kafka(bootstrap: str, topic: str, n: int) -> dict[str, float]:
    with temp_store() as path:
        return asyncio.run(_floor(path, bootstrap, topic, n))


async def _floor(path: str, bootstrap: str, topic: str, n: int) -> dict[str, float]:
    from confluent_kafka import Consumer, TopicPartition

    store = FloorStore(path)
    loop = asyncio.get_running_loop()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "floor",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            **GROUP_CONFIG,
        }
    )
    consumer.subscribe([topic])

    def consume(wanted: int) -> list[object]:
        batch = consumer.consume(wanted, timeout=0)
        return batch or consumer.consume(1, timeout=0.2)

    async def take(wanted: int) -> int:
        """One batch: checkpoint it (durable), then commit its offsets synchronously."""
        batch = [m for m in await loop.run_in_executor(None, consume, wanted) if m.error() is None]  # type: ignore[attr-defined]
        if not batch:
            return 0
        rows = [
            (f"{m.topic()}:{m.partition()}:{m.offset()}", "checkpointed", now(), pickle.dumps(m.value()))
            for m in batch
        ]  # type: ignore[attr-defined]
        await store.append_many("events", rows)
        high: dict[int, int] = {}
        for m in batch:
            high[m.partition()] = max(high.get(m.partition(), -1), m.offset())  # type: ignore[attr-defined]
        offsets = [TopicPartition(topic, p, o + 1) for p, o in high.items()]
        await loop.run_in_executor(None, lambda: consumer.commit(offsets=offsets, asynchronous=False))
        store.append_many("events", [(key, "committed", now(), None) for key, *_ in rows])
        return len(batch)

    join_start = time.perf_counter()
    while not await take(1):  # joins the group
        pass
    join_s = time.perf_counter() - join_start
    start = time.perf_counter()
    got = 0
    while got < n:
        got += await take(min(n - got, 10_000))
    elapsed = time.perf_counter() - start
    await store.flush()
    batches = store.batches
    await store.aclose()
    consumer.close()
    return {
        "messages_per_s": n / elapsed,
        "total_s": elapsed,
        "join_s": join_s,
        "batches": batches,
        "rss_mb": peak_rss_mb(),
    }
