"""A Redis Streams branch that loses a workflow.wait_for_any, against a real redis-server:
the entry it read is neither checkpointed nor acknowledged, stays pending in Redis, and
the next wait of its consumer gets it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import ClassVar

import pytest
import redis.asyncio as aioredis
from _redis import SKIP_REASON, RedisServer, redis_available

import evkit
from evkit import workflow
from evkit.listeners.redis_streams import RedisStreamListener, StreamEntry, make_client

pytestmark = [pytest.mark.redis, pytest.mark.skipif(not redis_available(), reason=SKIP_REASON)]

GROUP = "evkit"
CONSUMER = "worker-1"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the module (each test uses its own stream name)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain client for the test's side: producing entries and checking XPENDING."""
    redis = make_client(redis_server.url)
    yield redis
    await redis.aclose()


class HoldingStreamListener(RedisStreamListener):
    """Reads an entry, says so, and never returns: it loses while holding the entry."""

    received: ClassVar[asyncio.Event]

    async def poll_for_event(  # type: ignore[override]
        self, url: str, stream: str, group: str, consumer: str
    ) -> StreamEntry:
        await super().poll_for_event(url, stream, group, consumer)
        HoldingStreamListener.received.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class AfterEntryListener(workflow.EventListener):
    """Wins as soon as the Redis branch has read its entry."""

    async def poll_for_event(self) -> str:
        await HoldingStreamListener.received.wait()
        return "decided"


@workflow.step
async def pending_entries(_: object, url: str, stream: str) -> int:
    redis = make_client(url)
    try:
        return int((await redis.xpending(stream, GROUP))["pending"])
    finally:
        await redis.aclose()


@workflow.step
def then_read(_: object, url: str, stream: str) -> evkit.StepNode:
    return workflow.wait_for_event(RedisStreamListener, url, stream, GROUP, CONSUMER)


@workflow.step
def collect(*values: object) -> tuple[object, ...]:
    return values


async def test_a_losing_redis_branch_leaves_its_entry_pending_for_the_next_wait(
    aruntime: evkit.Runtime, redis_server: RedisServer, client: aioredis.Redis
) -> None:
    HoldingStreamListener.received = asyncio.Event()
    url, stream = redis_server.url, "stream:any-of"
    entry_id = await client.xadd(stream, {"n": "1"})
    decided = workflow.wait_for_any(
        {
            "redis": workflow.wait_for_event(HoldingStreamListener, url, stream, GROUP, CONSUMER),
            "other": workflow.wait_for_event(AfterEntryListener),
        }
    )
    pending = pending_entries.step(decided, url, stream)
    result = await workflow.run_async(
        collect.step(decided, pending, then_read.step(pending, url, stream)), workflow_id="w"
    )
    outcome, pending_after_the_race, later = result  # type: ignore[misc]
    assert outcome == ("other", "decided")
    assert pending_after_the_race == 1  # read by the loser, not acknowledged
    assert isinstance(later, StreamEntry)
    assert later.entry_id == entry_id
    assert (await client.xpending(stream, GROUP))["pending"] == 0  # acknowledged by the later wait
    rows = await asyncio.to_thread(
        lambda: evkit.sql("SELECT step_id, source_id FROM events ORDER BY step_id").fetchall()
    )
    assert rows == [("any_of", None), ("then_read/RedisStreamListener", f"redis:{stream}:{GROUP}:{entry_id}")]
