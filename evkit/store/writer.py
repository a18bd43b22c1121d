"""The store's single writer: one thread owns the connection; a loop-side queue batches writes.

This is evkit's group commit.

Rows queued while a batch is being written go into the next batch, so many events that
arrive together are made durable by one transaction. Nothing here blocks the loop: the
loop only appends to a list and awaits futures.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import duckdb

from evkit.errors import StoreError
from evkit.store.connection import (
    FileIdentity,
    check_still_at_path,
    file_identity,
    open_store,
    rollback,
    store_errors,
)
from evkit.store.rows import Record, by_values, insert_order, insert_records

T = TypeVar("T")


class Execute:
    """Queue op: run one SQL statement (deletes) in order with the appends."""

    __slots__ = ("params", "sql")

    def __init__(self, sql: str, params: Sequence[object]) -> None:
        self.sql = sql
        self.params = params


RowGroup = dict[type[Record], list[Record]]
"""Queue op: records appended between two ``Execute`` ops, by record type, each list in
append order (written in ``rows.insert_order``). Grouped as they are queued, so neither
the loop nor the writer handles an object per row."""

Op = RowGroup | Execute


class _Batch(asyncio.Future[None]):
    """The future of one batch, shared by every write in it.

    A task awaiting it that gets cancelled must not cancel it: that would tell every other
    writer of the batch that its write failed (and leave the queue unable to resolve it).
    So ``cancel()`` refuses, and the cancelled task gets its ``CancelledError`` once the
    batch is durable. Only the queue itself drops a batch, with :meth:`abandon`.
    """

    def cancel(self, msg: object = None) -> bool:
        return False

    def abandon(self) -> None:
        """Really cancel the batch (the queue stopped before writing it)."""
        super().cancel()


class StoreWriter:
    """Owns the store's connection and the one thread that may use it.

    A context manager: exiting closes the connection (after the queued work on the thread
    has run); it does not cancel runs.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        # Absolute: the check after each batch must stat the file DuckDB opened, whatever
        # directory the process changes to later.
        self._abspath = os.path.abspath(path)
        self._thread_cursors = threading.local()
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="evkit-store")
        try:
            self._con: duckdb.DuckDBPyConnection | None
            self._con, self._identity = self._thread.submit(self._open).result()
        except BaseException:
            self._thread.shutdown(wait=False)
            raise

    def _open(self) -> tuple[duckdb.DuckDBPyConnection, FileIdentity]:
        con = open_store(self.path)
        return con, file_identity(self._abspath)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._con is None

    def submit(
        self, fn: Callable[..., T], *args: object, doing: str | None = None
    ) -> concurrent.futures.Future[T]:
        """Run ``fn(connection, *args)`` on the writer thread.

        ``doing`` says what the call does, for its error messages (default: ``fn``'s name).

        Raises:
            StoreError: The store is closed.
        """
        if self._con is None:
            raise StoreError(
                f"Store {self.path!r} is closed; call workflow.init() to open it again.", path=self.path
            )
        con = self._con
        path = self.path
        label = doing or str(getattr(fn, "__name__", "a store call"))

        def call() -> T:
            with store_errors(path, label):
                return fn(con, *args)

        return self._thread.submit(call)

    def write(self, ops: Sequence[Op]) -> concurrent.futures.Future[None]:
        """Write ``ops`` in one durable transaction on the writer thread (see `apply_batch`).

        The future fails if the file at the store's path is no longer the one written to,
        so no caller treats the batch as durable then (see `check_still_at_path`).

        Raises:
            StoreError: The store is closed.
        """
        return self.submit(self._write_checked, ops, doing="committing a batch of writes")

    def _write_checked(self, con: duckdb.DuckDBPyConnection, ops: Sequence[Op]) -> None:
        apply_batch(con, ops)
        # After the commit, so a deletion during the write is seen too; before the batch's
        # future resolves, so no event of it is committed at its source.
        check_still_at_path(self._abspath, self._identity)

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(connection, *args)`` on the writer thread and wait for its result."""
        return self.submit(fn, *args).result()

    def thread_cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's reading cursor on this store, made on first use.

        Kept per writer (not per process), so a cursor never outlives its store's
        connection, whatever later runtime reuses the same memory address.
        """
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._thread_cursors, "cursor", None)
        if cursor is None:
            cursor = self.cursor()
            self._thread_cursors.cursor = cursor
        return cursor

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the same database, for one reading thread (MVCC snapshot)."""
        return self.call(_new_cursor)

    def close(self) -> None:
        """Close the connection once the queued work is done. Safe to call twice."""
        if self._con is None:
            return
        con, self._con = self._con, None
        self._thread.submit(con.close).result()
        self._thread.shutdown(wait=True)


def _new_cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    return con.cursor()


def apply_batch(con: duckdb.DuckDBPyConnection, ops: Sequence[Op]) -> None:
    """Write ``ops`` in one transaction, committed (and fsynced) before returning."""
    if _one_statement(ops):
        # A statement is a transaction of its own: BEGIN and COMMIT would only lengthen
        # the path of a lone checkpoint (a sent event's, say) that waits for this commit.
        _apply(con, ops[0])
        return
    con.execute("BEGIN TRANSACTION")
    try:
        for op in ops:
            _apply(con, op)
        con.execute("COMMIT")
    except BaseException:
        rollback(con)  # the error that matters is this one, not a refused ROLLBACK's
        raise


def _one_statement(ops: Sequence[Op]) -> bool:
    """Whether one statement writes ``ops``: a SQL statement, or few rows of one shape."""
    if len(ops) != 1:
        return False
    op = ops[0]
    return isinstance(op, Execute) or (len(op) == 1 and by_values(next(iter(op.values()))))


def _apply(con: duckdb.DuckDBPyConnection, op: Op) -> None:
    if isinstance(op, Execute):
        con.execute(op.sql, op.params)
        return
    for kind in insert_order(op):  # `seq` follows the statements: see rows.TABLES
        insert_records(con, kind, op[kind])


class WriteQueue:
    """Batches writes on the event loop and hands each batch to the writer thread.

    ``append`` returns a future that resolves when the row is durable; write-behind
    callers ignore it, the event checkpoint awaits it. Use it only on its loop.
    """

    def __init__(self, writer: StoreWriter, loop: asyncio.AbstractEventLoop) -> None:
        self.writer = writer
        self._loop = loop
        self._ops: list[Op] = []  # closed row groups and statements, in queue order
        self._rows: RowGroup = {}  # the open row group (rows since the last statement)
        self._batch: _Batch = _Batch(loop=loop)
        self._wakeup = asyncio.Event()
        self._failure: BaseException | None = None
        self._closing = False
        self._writing: asyncio.Future[None] | None = None
        self.batches_written = 0
        self._task = loop.create_task(self._drain(), name="evkit-store-queue")

    def append(self, record: Record) -> asyncio.Future[None]:
        """Queue a record; the returned future resolves once it is committed."""
        if self._failure is not None:  # the hot path of every row: kept short
            self._raise_failed()
        records = self._rows.get(type(record))
        if records is None:
            records = self._rows[type(record)] = []
        records.append(record)
        self._wakeup.set()
        return self._batch

    def execute(self, sql: str, params: Sequence[object] = ()) -> asyncio.Future[None]:
        """Queue a statement to run in order with the appends."""
        if self._failure is not None:
            self._raise_failed()
        self._close_rows()
        self._ops.append(Execute(sql, params))
        self._wakeup.set()
        return self._batch

    def _close_rows(self) -> None:
        if self._rows:
            self._ops.append(self._rows)
            self._rows = {}

    def _raise_failed(self) -> None:
        raise StoreError(
            f"Store {self.writer.path!r} failed earlier and accepts no more writes: {self._failure}",
            path=self.writer.path,
        ) from self._failure

    async def flush(self) -> None:
        """Wait until everything queued so far is committed.

        Raises:
            StoreError: The batch holding those writes failed.
        """
        if self._ops or self._rows:
            await asyncio.shield(self._batch)
        elif self._writing is not None:
            await asyncio.shield(self._writing)

    @property
    def pending(self) -> int:
        """How many rows and statements wait for the next batch."""
        ops = [*self._ops, self._rows]
        return sum(sum(map(len, op.values())) if isinstance(op, dict) else 1 for op in ops)

    def take_pending(self) -> list[Op]:
        """Remove and return the ops not yet handed to the writer (for a synchronous close)."""
        self._close_rows()
        ops, self._ops = self._ops, []
        return ops

    async def read(self, fn: Callable[..., T], *args: object) -> T:
        """Flush, then run ``fn(connection, *args)`` on the writer thread; return its result."""
        await self.flush()
        return await asyncio.wrap_future(self.writer.submit(fn, *args))

    async def _drain(self) -> None:
        while True:
            await self._wakeup.wait()
            # One more loop iteration before taking the batch: tasks woken together with
            # us (an inbox send wakes a wait, whose checkpoint follows) add their rows to
            # it, so they share one commit instead of paying one each.
            await asyncio.sleep(0)
            self._wakeup.clear()
            self._close_rows()
            if not self._ops:
                if self._closing:
                    return
                continue
            ops, batch = self._ops, self._batch
            self._ops, self._batch = [], _Batch(loop=self._loop)
            self._writing = batch
            try:
                await asyncio.wrap_future(self.writer.write(ops))
            except asyncio.CancelledError:
                batch.abandon()
                raise
            except BaseException as exc:  # every waiter of this batch must hear of it
                self._failure = exc
                batch.set_exception(exc)
                batch.exception()  # write-behind callers never look; don't warn for them
            else:
                self.batches_written += 1
                batch.set_result(None)
            finally:
                self._writing = None
                # Let the rows go now, not when the next batch comes: after a big run's
                # waits register, that would keep all their rows alive while the run waits.
                del ops

    async def aclose(self) -> None:
        """Write what is queued, then stop the queue (the writer stays open)."""
        await self.flush()
        self._closing = True
        self._wakeup.set()
        await self._task
