"""A repeated send of an event id answers only once the first copy is durable."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import duckdb

import evkit
from evkit.listeners.manual import SendResult


@contextlib.contextmanager
def _store_thread_parked(runtime: evkit.Runtime) -> Iterator[threading.Event]:
    """Hold every later store call (reads and commits) until the yielded event is set
    (at the latest on leaving the block, so a failing test does not hang its teardown).

    The store has one thread, which runs its calls in order: a call that blocks there
    keeps the first send's commit from happening, as a slow disk would.
    """
    release = threading.Event()
    runtime.writer.submit(lambda _con: release.wait())
    try:
        yield release
    finally:
        release.set()


async def _count_sent(reader: duckdb.DuckDBPyConnection, event_id: str) -> int:
    """Committed inbox rows of ``event_id``, read on a connection of its own (not the store
    thread, which the test holds)."""

    def count() -> int:
        row = reader.execute("SELECT count(*) FROM inbox WHERE event_id = ?", [event_id]).fetchone()
        assert row is not None
        return int(row[0])

    return await asyncio.to_thread(count)


async def _let_every_task_run() -> None:
    """Yield to the loop a few times: a task that could answer without the store does."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_repeated_send_answers_duplicate_only_once_the_first_copy_is_durable(
    aruntime: evkit.Runtime,
) -> None:
    inbox = aruntime.engine().inbox
    reader = await asyncio.to_thread(aruntime.writer.cursor)
    with _store_thread_parked(aruntime) as release:
        # The first send queues its row (like the HTTP inbox, it knows the id is new) and
        # waits for its commit; the repeat (a client retrying after a timeout) comes then.
        first = asyncio.create_task(inbox.send("w", "k", "hello", event_id="e1", known_new=True))
        repeat = asyncio.create_task(inbox.send("w", "k", "hello", event_id="e1"))
        await _let_every_task_run()
        assert not repeat.done(), "the repeat answered while nothing was stored"
        assert await _count_sent(reader, "e1") == 0
        release.set()
    assert await repeat == SendResult("e1", duplicate=True)
    assert first.done()
    assert await first == SendResult("e1", duplicate=False)
    assert await _count_sent(reader, "e1") == 1
    reader.close()


async def test_repeated_send_stores_the_event_itself_when_the_first_send_is_cancelled(
    aruntime: evkit.Runtime,
) -> None:
    inbox = aruntime.engine().inbox
    reader = await asyncio.to_thread(aruntime.writer.cursor)
    with _store_thread_parked(aruntime):
        # The first send waits for its store read (was e1 sent?) and is cancelled there,
        # before it queued anything: the repeat must not call it a duplicate.
        first = asyncio.create_task(inbox.send("w", "k", "hello", event_id="e1"))
        repeat = asyncio.create_task(inbox.send("w", "k", "hello", event_id="e1"))
        await _let_every_task_run()
        first.cancel()
        await asyncio.wait([first])
        assert first.cancelled()
    assert await repeat == SendResult("e1", duplicate=False)
    assert await _count_sent(reader, "e1") == 1
    reader.close()
