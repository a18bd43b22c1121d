"""Scenario 9: Kafka messages through ``KafkaListener`` waits, checkpointed and committed.

The parent starts a real broker (tansu, as the test suite does) and produces N messages on
3 partitions for the floor: a plain confluent-kafka consumer that appends each batch to
DuckDB as Arrow (one committed transaction) and then commits the batch's offsets
synchronously, timed from its first message after joining its group.

evkit runs N ``KafkaListener`` waits feeding one step, as scenario 3 runs N waits on a
stream: once all N wait (each registered with the engine's consumer), a producer process
sends the N messages to a topic of evkit's own, and the timing runs until the last
commit. The group join (with one message first) is left out, as for the floor.
"""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import peak_rss_mb, temp_store
from bench.floor import FloorStore, now

if TYPE_CHECKING:
    from confluent_kafka import Producer

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
    create_topic(bootstrap, topic)
    _send(bootstrap, topic, n)


def create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(10)


def _send(bootstrap: str, topic: str, n: int, producer: Producer | None = None) -> None:
    from confluent_kafka import Producer

    producer = producer or Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
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


class _Producer:
    """A producer process that sends ``n`` messages when told to (a real source: the
    messages arrive while the waits wait, from another process)."""

    def __init__(self, bootstrap: str, topic: str, n: int) -> None:
        root = str(Path(__file__).resolve().parent.parent)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.scen_kafka", bootstrap, topic, str(n)],
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "ready":  # its client is made: "go" sends at once
            raise RuntimeError(f"the producer for {topic!r} exited with {self._proc.wait()}")

    def go(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write("go\n")
        self._proc.stdin.flush()

    def wait(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        if self._proc.wait(60) != 0:
            raise RuntimeError(f"the producer exited with {self._proc.returncode}")


def evkit_kafka(bootstrap: str, topic: str, n: int) -> dict[str, float]:
    """N ``KafkaListener`` waits feeding one step. Timed from the moment all N wait and
    the producer is told to send, until the last commit, as scenario 3 is; the whole run
    (registering the waits too) is reported as well. ``topic`` is the floor's: evkit
    reads ``<topic>-evkit``, whose messages are sent only once its waits wait."""
    from bench.listeners import COMMITS, POLLS, CountingKafkaListener
    from evkit import workflow

    topic = f"{topic}-evkit"
    produce(bootstrap, topic, 1)  # the message the consumer joins its group with
    producer = _Producer(bootstrap, topic, n)
    with temp_store() as path:
        runtime = workflow.init(storage=path, loop="thread")

        @workflow.step
        def count(*messages: object) -> int:
            return len(messages)

        def wait() -> object:
            return workflow.wait_for_event(
                CountingKafkaListener, topic, group="evkit", bootstrap_servers=bootstrap, config=GROUP_CONFIG
            )

        join_start = time.perf_counter()
        POLLS.reset(1)
        COMMITS.reset(1)
        assert workflow.run(count.step(wait()), workflow_id="join") == 1  # joins the group
        join_s = time.perf_counter() - join_start
        POLLS.reset(n)
        COMMITS.reset(n)
        run_start = time.perf_counter()
        handle = workflow.run_async(count.step(*[wait() for _ in range(n)]), workflow_id="kafka")
        POLLS.reached.wait()
        start = time.perf_counter()
        producer.go()
        COMMITS.reached.wait()
        elapsed = time.perf_counter() - start
        assert handle.result() == n
        whole_run = time.perf_counter() - run_start
        batches = runtime.engine().queue.batches_written
        workflow.shutdown()
    producer.wait()
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


def _producer_main(argv: list[str]) -> int:
    """``python -m bench.scen_kafka BOOTSTRAP TOPIC N``: say ``ready``, wait for a line, send N."""
    bootstrap, topic, n = argv
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    producer.list_topics(topic, timeout=10)  # connected, with the topic's metadata, before "ready"
    print("ready", flush=True)
    sys.stdin.readline()
    _send(bootstrap, topic, int(n), producer)
    return 0


if __name__ == "__main__":
    raise SystemExit(_producer_main(sys.argv[1:]))
