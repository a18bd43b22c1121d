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
from evkit.listeners import kafka_consumer
from evkit.listeners.kafka import KafkaListener, KafkaMessage
from evkit.listeners.kafka_consumer import Consumer

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
        committed = await asyncio.to_thread(
            _committed, event.bootstrap_servers, event.group, event.topic, event.partition
        )
        checkpoints = await _count(
            f"SELECT count(*) FROM events WHERE source_id = '{event.source_id}' "
            "AND checkpointed_at IS NOT NULL"
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


def _commit_at(bootstrap: str, group: str, topic: str, offset: int) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        consumer.close()


@workflow.step
def values(*messages: KafkaMessage) -> list[str]:
    return [message.text for message in messages]


def wait_on(
    broker: KafkaBroker, topic: str, listener: type[KafkaListener] = KafkaListener, **options: object
):
    return workflow.wait_for_event(
        listener,
        topic,
        group=topic,
        bootstrap_servers=broker.bootstrap_servers,
        config=FAST_GROUP_CONFIG,
        **options,
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
    assert all(
        committed <= offset and checkpoints == 1 for offset, committed, checkpoints in Recorder.at_commit
    )
    assert await asyncio.to_thread(_committed, broker.bootstrap_servers, topic, topic) == 3
    sources = await _rows("SELECT source_id FROM events WHERE workflow_id = 'acks' ORDER BY source_id")
    assert sources == [(f"kafka:{topic}:{topic}:0:{n}",) for n in range(3)]


@pytest.mark.slow
async def test_parallel_waits_get_distinct_messages_in_partition_order(
    aruntime: evkit.Runtime, broker: KafkaBroker, topic: str
) -> None:
    await asyncio.to_thread(broker.create_topic, topic)
    handle = workflow.run_async(
        values.step(*(wait_on(broker, topic) for _ in range(8))), workflow_id="parallel"
    )
    await asyncio.to_thread(broker.produce, topic, [f"m{n}".encode() for n in range(8)])
    assert await handle == [f"m{n}" for n in range(8)]
    assert await asyncio.to_thread(_committed, broker.bootstrap_servers, topic, topic) == 8


@workflow.step
def chain(
    count: int, bootstrap: str, topic: str, seen: list[str], message: KafkaMessage | None = None
) -> object:
    """A loop of dynamic continuations: one wait per round."""
    if message is not None:
        seen = [*seen, message.text]
    if len(seen) == count:
        return seen
    wait = workflow.wait_for_event(
        KafkaListener, topic, group=topic, bootstrap_servers=bootstrap, config=FAST_GROUP_CONFIG
    )
    return chain.step(count, bootstrap, topic, seen, wait)


@pytest.mark.slow
async def test_a_loop_of_continuations_reads_the_partition_in_order(
    aruntime: evkit.Runtime, broker: KafkaBroker, topic: str
) -> None:
    await asyncio.to_thread(broker.create_topic, topic)
    await asyncio.to_thread(broker.produce, topic, [f"m{n}".encode() for n in range(5)])
    node = chain.step(5, broker.bootstrap_servers, topic, [])
    assert await node.run_async(workflow_id="loop") == [f"m{n}" for n in range(5)]
    assert await asyncio.to_thread(_committed, broker.bootstrap_servers, topic, topic) == 5


@pytest.mark.slow
async def test_checkpointed_message_whose_commit_was_lost_is_committed_on_resume_not_delivered_again(
    store_path: str, broker: KafkaBroker, topic: str
) -> None:
    await asyncio.to_thread(broker.create_topic, topic)
    await asyncio.to_thread(broker.produce, topic, [b"m0", b"m1"])
    rt = await asyncio.to_thread(workflow.init, storage=store_path)
    Recorder.fail_commits = 1
    with pytest.raises(workflow.WorkflowExecutionError):
        await values.step(wait_on(broker, topic, CheckingKafkaListener)).run_async(workflow_id="lost")
    await rt.aclose()
    # The run ending freed what its waits held: m0 is checkpointed, so the engine committed
    # it. Put the group back where a crash before that commit would have left it.
    await asyncio.to_thread(_commit_at, broker.bootstrap_servers, topic, topic, 0)

    rt = await asyncio.to_thread(workflow.init, storage=store_path)
    try:
        assert await workflow.resume_async("lost") == ["m0"]
        assert await asyncio.to_thread(_committed, broker.bootstrap_servers, topic, topic) == 1
        # Polled once, committed once: the resume only repeated the commit.
        assert await _rows("SELECT poll_attempts, commits FROM events WHERE workflow_id = 'lost'") == [(1, 1)]
        assert [offset for offset, _, _ in Recorder.at_commit] == [0, 0]
    finally:
        await rt.aclose()


@pytest.mark.slow
async def test_message_checkpointed_before_a_restart_is_skipped_and_committed(
    store_path: str, broker: KafkaBroker, topic: str
) -> None:
    await asyncio.to_thread(broker.create_topic, topic)
    await asyncio.to_thread(broker.produce, topic, [b"m0", b"m1"])
    # First engine: m0 is checkpointed, its commit fails, the run fails; the engine closes.
    rt = await asyncio.to_thread(workflow.init, storage=store_path)
    Recorder.fail_commits = 1
    with pytest.raises(workflow.WorkflowExecutionError):
        await values.step(wait_on(broker, topic, CheckingKafkaListener)).run_async(workflow_id="a")
    await rt.aclose()
    # As a crash before the commit reached the broker would leave the group:
    await asyncio.to_thread(_commit_at, broker.bootstrap_servers, topic, topic, 0)

    # A new engine on the same store, a new run: the consumer reads m0 again (nothing was
    # committed), the store says it is taken, so it is committed and the wait gets m1.
    rt = await asyncio.to_thread(workflow.init, storage=store_path)
    try:
        assert await values.step(wait_on(broker, topic)).run_async(workflow_id="b") == ["m1"]
        assert await asyncio.to_thread(_committed, broker.bootstrap_servers, topic, topic) == 2
    finally:
        await rt.aclose()


async def test_timed_out_wait_takes_nothing_and_a_later_wait_gets_the_message(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock, broker: KafkaBroker, topic: str
) -> None:
    await asyncio.to_thread(broker.create_topic, topic)
    handle = workflow.run_async(
        wait_on(broker, topic, timeout_seconds=5, default="nothing"), workflow_id="timeout"
    )
    await fake_clock.wait_for_sleepers_async(1)
    fake_clock.advance(5)
    assert await handle == "nothing"
    await asyncio.to_thread(broker.produce, topic, [b"m0"])
    assert await values.step(wait_on(broker, topic)).run_async(workflow_id="later") == ["m0"]


async def test_config_reaches_the_consumer_and_its_errors_name_the_topic(
    aruntime: evkit.Runtime, broker: KafkaBroker, topic: str
) -> None:
    node = workflow.wait_for_event(
        KafkaListener, topic, group=topic, bootstrap_servers=broker.bootstrap_servers,
        config={"session.timeout.ms": "not a number"},
    )  # fmt: skip
    with pytest.raises(workflow.WorkflowExecutionError) as info:
        await node.run_async(workflow_id="bad-config")
    assert f"Reading Kafka topic {topic!r} (group {topic!r}) at {broker.bootstrap_servers} failed" in str(
        info.value.__cause__
    )
    assert "session.timeout.ms" in str(info.value.__cause__)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"topic": ""}, "KafkaListener: `topic` must be a non-empty str, got ''."),
        ({"group": 3}, "KafkaListener: `group` must be a non-empty str, got 3."),
        (
            {"config": {"enable.auto.commit": True}},
            "KafkaListener: `config` sets 'enable.auto.commit' to True, but evkit commits offsets itself",
        ),
        (
            {"config": {"group.id": "x"}},
            "KafkaListener: `config` sets 'group.id'; pass it as the `group=` argument",
        ),
    ],
)
async def test_bad_arguments_fail_the_wait_with_a_message_naming_the_argument(
    aruntime: evkit.Runtime, kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"topic": "t", "group": "g", "bootstrap_servers": "127.0.0.1:1", **kwargs}
    topic = arguments.pop("topic")
    with pytest.raises(workflow.WorkflowExecutionError) as info:
        await workflow.wait_for_event(KafkaListener, topic, **arguments).run_async(workflow_id="bad")
    assert str(info.value.__cause__).startswith(message)


def test_message_record_decodes_its_value_hides_its_config_and_survives_pickling() -> None:
    message = KafkaMessage(
        topic="t", partition=1, offset=7, key=b"k", value=b'{"n": 1}', headers=(("h", b"v"),),
        group="g", bootstrap_servers="b:1", config=(("sasl.password", "secret"),),
    )  # fmt: skip
    assert (message.text, message.json(), message.source_id) == ('{"n": 1}', {"n": 1}, "kafka:g:t:1:7")
    assert "secret" not in repr(message)
    assert "secret" not in codec.readable(message)
    assert codec.loads(codec.dumps(message)) == message


@pytest.mark.slow
def test_the_design_documents_queue_listener_runs_against_a_real_broker(
    runtime: evkit.Runtime, broker: KafkaBroker, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_seed_examples import seed_blocks  # tests/integration is on sys.path

    # The example as written, with only its import: it names neither brokers nor group.
    code = "from evkit.listeners.kafka_consumer import Consumer\n" + seed_blocks()[3]
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    monkeypatch.setattr(Consumer, "default_config", {"group.id": topic, **FAST_GROUP_CONFIG})
    broker.create_topic(topic)
    broker.produce(topic, [b"m0", b"m1"])
    namespace: dict[str, object] = {"EventListener": workflow.EventListener}
    exec(code, namespace)
    listener = namespace["QueueEventListener"]
    first = workflow.wait_for_event(listener, topic).run(workflow_id="q1")  # type: ignore[arg-type]
    second = workflow.wait_for_event(listener, topic).run(workflow_id="q2")  # type: ignore[arg-type]
    assert isinstance(first, KafkaMessage)
    assert isinstance(second, KafkaMessage)
    assert (first.text, second.text) == ("m0", "m1")
    # The example commits without awaiting: wait for those commits on the engine's loop.
    commits = list(kafka_consumer._commits)
    asyncio.run_coroutine_threadsafe(_all(commits), runtime.engine().loop).result(timeout=10)
    assert _committed(broker.bootstrap_servers, topic, topic) == 2
    assert evkit.sql("SELECT state FROM events ORDER BY workflow_id").fetchall() == [("committed",)] * 2


async def _all(tasks: list[asyncio.Task[None]]) -> None:
    await asyncio.gather(*tasks)


async def _rows(query: str) -> list[tuple[object, ...]]:
    return await asyncio.to_thread(lambda: evkit.sql(query).fetchall())


async def _count(query: str) -> int:
    (value,) = (await _rows(query))[0]
    assert isinstance(value, int)
    return value
