"""The store as a service for listeners: the named reads a listener may make.

A listener never runs SQL of its own and never names a table: it asks this service (found
with ``get_event_context().services.require(StoreReads)``), so the store's tables can
change without touching a listener. Reads run on the store's writer thread, off the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Collection, Sequence
from typing import final

import duckdb

from evkit.services import Service
from evkit.store.reads import inbox_key_of, stored_run_status
from evkit.store.writer import StoreWriter, WriteQueue


@final
class StoreReads(Service):
    """Named reads of one store for the listeners of its engine.

    Args:
        queue: The store's write queue (reads that must see queued writes flush it first).
        writer: The store's writer (reads of committed data only go straight to it).
        active_runs: The ids of the runs the engine executes now (a live view).
    """

    def __init__(self, queue: WriteQueue, writer: StoreWriter, active_runs: Collection[str]) -> None:
        self._queue = queue
        self._writer = writer
        self._active_runs = active_runs

    def is_active(self, workflow_id: str) -> bool:
        """True while this engine executes the run (no store read)."""
        return workflow_id in self._active_runs

    async def stored_status(self, workflow_id: str) -> str | None:
        """The run's committed status in the store (``None``: no such run)."""
        return await asyncio.wrap_future(self._writer.submit(stored_run_status, workflow_id))

    async def lookup_sent_event(self, workflow_id: str, event_id: str) -> tuple[str | None, str | None]:
        """The run's committed status, and the key an event sent with ``event_id`` went to.

        Reads committed data only: a send still being stored is not seen (callers that
        need it wait for that send first).
        """
        return await asyncio.wrap_future(self._writer.submit(_lookup_sent_event, workflow_id, event_id))

    async def checkpointed_sources(self, source_ids: Sequence[str]) -> set[str]:
        """Which of ``source_ids`` some event step of this store has checkpointed.

        ``source_ids`` are ``EventListener.source_id`` values; checkpoints still queued
        count too (the queue is flushed first).
        """
        return await self._queue.read(_checkpointed_sources, list(source_ids))

    def durable_checkpointed_sources(self, source_ids: Sequence[str]) -> concurrent.futures.Future[set[str]]:
        """Like :meth:`checkpointed_sources`, reading committed checkpoints only; any thread.

        It does not wait for queued writes, so it costs a query, not a flush of the
        engine's group commit, and it returns a ``concurrent.futures.Future`` so a source's
        own thread can wait for it without the loop. Use it where the checkpoints still
        queued cannot be among ``source_ids``: a source that holds the events its waits
        took until their ``event_checkpointed`` (which runs only once the checkpoint is
        durable).

        Raises:
            StoreError: The store is closed.
        """
        return self._writer.submit(_checkpointed_sources, list(source_ids))

    async def first_waiting_at(self, workflow_id: str, step_id: str) -> float | None:
        """When the event step's first wait started (epoch seconds), ``None`` if it never did.

        The same on every attempt and after restarts, so a listener can tell what came
        before the wait from what came after it (the wait's own row counts: the queue is
        flushed first).
        """
        return await self._queue.read(_first_waiting_at, workflow_id, step_id)


def _lookup_sent_event(
    con: duckdb.DuckDBPyConnection, workflow_id: str, event_id: str
) -> tuple[str | None, str | None]:
    return stored_run_status(con, workflow_id), inbox_key_of(con, workflow_id, event_id)


def _first_waiting_at(con: duckdb.DuckDBPyConnection, workflow_id: str, step_id: str) -> float | None:
    row = con.execute(
        """
        SELECT epoch(min(recorded_at)) FROM event_log
        WHERE workflow_id = ? AND step_id = ? AND state = 'waiting'
        """,
        [workflow_id, step_id],
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def _checkpointed_sources(con: duckdb.DuckDBPyConnection, source_ids: list[str]) -> set[str]:
    rows = con.execute(
        """
        SELECT DISTINCT source_id FROM event_checkpoint_log
        WHERE list_contains(?::VARCHAR[], source_id)
        """,
        [source_ids],
    ).fetchall()
    return {row[0] for row in rows}
