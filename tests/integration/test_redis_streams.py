"""RedisStreamListener against a real redis-server: delivery through a consumer group, XACK
only after the checkpoint, and what a crash leaves behind (read-not-acked entries are
delivered again; checkpointed-not-acked ones are acked, never delivered twice)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import ClassVar

import pytest
import redis.asyncio as aioredis
from _redis import SKIP_REASON, RedisServer, redis_available

import evkit
from evkit import codec, workflow
from evkit.listeners.redis_streams import RedisStreamListener, StreamEntry, make_client

pytestmark = [pytest.mark.redis, pytest.mark.skipif(not redis_available(), reason=SKIP_REASON)]

GROUP = "evkit"
CONSUMER = "worker-1"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the module (each test uses its own stream names): starting
    one per test would cost more than the tests themselves."""
    with RedisServer() as server:
        yield server


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain client for the test's side: producing entries and checking XPENDING."""
    redis = make_client(redis_server.url)
    yield redis
    await redis.aclose()


@pytest.fixture
def stream(request: pytest.FixtureRequest) -> str:
    """A stream name no other test uses."""
    return f"stream:{request.node.name}"


class Recorder:
    """What the checking listener saw at commit time (listeners themselves are stateless)."""

    at_commit: ClassVar[list[tuple[str, bool, int]]] = []
    fail_commits: ClassVar[int] = 0


@pytest.fixture(autouse=True)
def _clear_recorder() -> None:
    Recorder.at_commit = []
    Recorder.fail_commits = 0


class CheckingStreamListener(RedisStreamListener):
    """Records, when the commit starts, whether the entry is still pending in Redis and how
    many checkpoints the store holds; can fail its first commits like a lost broker."""

    async def event_checkpointed(self, event: StreamEntry) -> None:  # type: ignore[override]
        redis = make_client(event.url)
        try:
            pending = await redis.xpending_range(event.stream, event.group, min="-", max="+", count=100)
        finally:
            await redis.aclose()
        checkpoints = await _count(
            f"SELECT count(*) FROM events WHERE source_id = '{event.source_id}' "
            "AND checkpointed_at IS NOT NULL"
        )
        still_pending = event.entry_id in {p["message_id"] for p in pending}
        Recorder.at_commit.append((event.entry_id, still_pending, checkpoints))
        if Recorder.fail_commits > 0:
            Recorder.fail_commits -= 1
            raise ConnectionError("the broker went away before the ack")
        await super().event_checkpointed(event)


@workflow.step
def numbers(*entries: StreamEntry) -> list[int]:
    return [int(entry.fields["n"]) for entry in entries]


def wait_on(
    url: str, stream: str, listener: type[RedisStreamListener] = RedisStreamListener, **options: object
):
    return workflow.wait_for_event(listener, url, stream, GROUP, CONSUMER, **options)


async def test_entries_are_acked_only_after_their_checkpoint_is_durable(
    aruntime: evkit.Runtime, redis_server: RedisServer, client: aioredis.Redis, stream: str
) -> None:
    ids = [await client.xadd(stream, {"n": str(n)}) for n in range(3)]
    waits = [wait_on(redis_server.url, stream, CheckingStreamListener) for _ in range(3)]
    result = await numbers.step(*waits).run_async(workflow_id="acks")
    assert sorted(result) == [0, 1, 2]
    # At each commit the entry was still unacknowledged and its checkpoint already durable.
    assert sorted(Recorder.at_commit) == [(entry_id, True, 1) for entry_id in ids]
    assert (await client.xpending(stream, GROUP))["pending"] == 0
    sources = await _rows("SELECT source_id FROM events WHERE workflow_id = 'acks' ORDER BY source_id")
    assert sources == [(f"redis:{stream}:{GROUP}:{entry_id}",) for entry_id in sorted(ids)]


@pytest.mark.slow
async def test_parallel_waits_on_one_consumer_each_get_a_different_entry(
    aruntime: evkit.Runtime, redis_server: RedisServer, client: aioredis.Redis, stream: str
) -> None:
    handle = workflow.run_async(
        numbers.step(*(wait_on(redis_server.url, stream) for _ in range(8))), workflow_id="parallel"
    )
    for n in range(8):
        await client.xadd(stream, {"n": str(n)})
    assert sorted(await handle) == list(range(8))
    assert (await client.xpending(stream, GROUP))["pending"] == 0


async def test_entry_read_but_not_acked_before_a_crash_is_delivered_again(
    aruntime: evkit.Runtime, redis_server: RedisServer, client: aioredis.Redis, stream: str
) -> None:
    # What a process killed after XREADGROUP and before its checkpoint leaves behind.
    await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    lost = await client.xadd(stream, {"n": "7"})
    await client.xadd(stream, {"n": "8"})
    await client.xreadgroup(GROUP, CONSUMER, {stream: ">"}, count=1)
    assert (await client.xpending(stream, GROUP))["pending"] == 1

    entry = await wait_on(redis_server.url, stream).run_async(workflow_id="redelivered")
    assert isinstance(entry, StreamEntry)
    assert (entry.entry_id, entry.fields) == (lost, {"n": "7"})
    assert (await client.xpending(stream, GROUP))["pending"] == 0


async def test_checkpointed_entry_whose_ack_was_lost_is_acked_on_resume_not_delivered_again(
    aruntime: evkit.Runtime, redis_server: RedisServer, client: aioredis.Redis, stream: str
) -> None:
    first = await client.xadd(stream, {"n": "1"})
    Recorder.fail_commits = 1
    node = numbers.step(wait_on(redis_server.url, stream, CheckingStreamListener))
    with pytest.raises(workflow.WorkflowExecutionError):
        await node.run_async(workflow_id="lost-ack")
    assert (await client.xpending(stream, GROUP))["pending"] == 1

    assert await workflow.resume_async("lost-ack") == [1]
    assert (await client.xpending(stream, GROUP))["pending"] == 0
    # Polled once, committed once: the resume only repeated the commit.
    assert await _rows(
        "SELECT poll_attempts, commits, source_id FROM events WHERE workflow_id = 'lost-ack'"
    ) == [(1, 1, f"redis:{stream}:{GROUP}:{first}")]
    assert [entry_id for entry_id, _, _ in Recorder.at_commit] == [first, first]


async def test_checkpointed_but_unacked_entry_is_skipped_and_acked_by_another_wait(
    aruntime: evkit.Runtime, redis_server: RedisServer, client: aioredis.Redis, stream: str
) -> None:
    await client.xadd(stream, {"n": "1"})
    Recorder.fail_commits = 1
    with pytest.raises(workflow.WorkflowExecutionError):
        await numbers.step(wait_on(redis_server.url, stream, CheckingStreamListener)).run_async(
            workflow_id="a"
        )
    assert (await client.xpending(stream, GROUP))["pending"] == 1

    # Another run reading the same consumer rescans the pending list: the store says entry
    # 1 is taken, so it is acknowledged there and the wait gets the next entry.
    handle = workflow.run_async(numbers.step(wait_on(redis_server.url, stream)), workflow_id="b")
    await _until(lambda: handle.status is workflow.WAITING)
    await client.xadd(stream, {"n": "2"})
    assert await handle == [2]
    assert (await client.xpending(stream, GROUP))["pending"] == 0


async def test_timed_out_wait_takes_nothing_and_a_later_wait_gets_the_entry(
    aruntime: evkit.Runtime,
    fake_clock: evkit.FakeClock,
    redis_server: RedisServer,
    client: aioredis.Redis,
    stream: str,
) -> None:
    handle = workflow.run_async(
        wait_on(redis_server.url, stream, timeout_seconds=5, default="nothing"), workflow_id="timeout"
    )
    await fake_clock.wait_for_sleepers_async(1)
    fake_clock.advance(5)
    assert await handle == "nothing"
    await client.xadd(stream, {"n": "3"})
    assert await numbers.step(wait_on(redis_server.url, stream)).run_async(workflow_id="later") == [3]
    assert (await client.xpending(stream, GROUP))["pending"] == 0


async def test_entry_deleted_from_the_stream_while_pending_is_acked_and_skipped(
    aruntime: evkit.Runtime, redis_server: RedisServer, client: aioredis.Redis, stream: str
) -> None:
    await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    gone = await client.xadd(stream, {"n": "1"})
    await client.xreadgroup(GROUP, CONSUMER, {stream: ">"}, count=1)
    await client.xdel(stream, gone)
    await client.xadd(stream, {"n": "2"})
    assert await numbers.step(wait_on(redis_server.url, stream)).run_async(workflow_id="trimmed") == [2]
    assert (await client.xpending(stream, GROUP))["pending"] == 0


def test_stream_entry_repr_hides_the_url_and_survives_pickling() -> None:
    entry = StreamEntry(
        stream="s", group="g", consumer="c", entry_id="1-0", fields={"n": "1"}, url="redis://:secret@h:1/0"
    )
    assert "secret" not in repr(entry)
    assert codec.loads(codec.dumps(entry)) == entry
    assert "secret" not in codec.readable(entry)


async def test_bad_arguments_fail_the_wait_with_a_message_naming_the_argument(
    aruntime: evkit.Runtime,
) -> None:
    with pytest.raises(workflow.WorkflowExecutionError) as info:
        await workflow.wait_for_event(
            RedisStreamListener, "redis://127.0.0.1:1/0", "", GROUP, CONSUMER
        ).run_async(workflow_id="bad")
    assert "`stream` must be a non-empty str, got ''" in str(info.value.__cause__)


async def _rows(query: str) -> list[tuple[object, ...]]:
    return await asyncio.to_thread(lambda: evkit.sql(query).fetchall())


async def _count(query: str) -> int:
    (value,) = (await _rows(query))[0]
    assert isinstance(value, int)
    return value


async def _until(condition: object, timeout_seconds: float = 5.0) -> None:
    """Yield to the loop until ``condition()`` holds (the engine runs on this loop)."""
    assert callable(condition)
    async with asyncio.timeout(timeout_seconds):
        while not condition():  # noqa: ASYNC110 - no event exists for these conditions
            await asyncio.sleep(0.005)
