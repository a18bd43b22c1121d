"""The store's single writer: one thread owns the connection; a loop-side queue batches writes.

This is evkit's group commit.

Rows queued while a batch is being written go into the next batch, so many events that
arrive together are made durable by one transaction. Nothing here blocks the loop: the
loop only appends to a list and awaits futures.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar

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
from evkit.store.schema import COLUMNS, INSERT_ORDER, ROW_SHAPES

if TYPE_CHECKING:
    import pyarrow as pa

T = TypeVar("T")
Row = tuple[object, ...]

# Columns of type TIMESTAMPTZ; rows hold them as epoch seconds (see `now`).
TIMESTAMP_COLUMNS = frozenset(
    {"created_at", "recorded_at", "deadline", "timeout_at", "received_at", "sent_at", "inbox_sent_at"}
)


def _arrow() -> tuple[ModuleType, dict[str, pa.DataType]]:
    """The pyarrow module and the Arrow type of each column that is not a string.

    pyarrow (with numpy) is a third of `import evkit` (~0.12 s), and small batches never
    need it: it is imported on the writer thread by the first batch that does.
    """
    import pyarrow as pa

    return pa, _arrow_types()


@functools.cache
def _arrow_types() -> dict[str, pa.DataType]:
    # Built whole before anyone sees it: two writers (two runtimes in one process) filling
    # a shared dict in place could read it half-filled, and take a blob column for a
    # string column.
    import pyarrow as pa

    types: dict[str, pa.DataType] = dict.fromkeys(TIMESTAMP_COLUMNS, pa.timestamp("us", tz="UTC"))
    types.update(
        dict.fromkeys(("dag_blob", "output_blob", "error_blob", "result_blob", "payload_blob"), pa.binary())
    )
    types.update(owner_pid=pa.int32(), attempt=pa.int32())
    return types


# Below this many rows a multi-row VALUES insert is faster than building an Arrow table
# (measured: 1 row 2 ms vs 22 ms for the first Arrow insert; 16 rows 3.5 ms vs 1.9 ms).
_ARROW_THRESHOLD = 8
_ARROW_SLICE_ROWS = 20_000


class Execute:
    """Queue op: run one SQL statement (deletes) in order with the appends."""

    __slots__ = ("params", "sql")

    def __init__(self, sql: str, params: Sequence[object]) -> None:
        self.sql = sql
        self.params = params


RowGroup = dict[str, list[Row]]
"""Queue op: rows appended between two ``Execute`` ops, by table (or narrow row shape,
see ``ROW_SHAPES``), each list in append order; the tables are written in
``INSERT_ORDER``. Grouped as they are queued, so neither the loop nor the writer handles
an object per row."""

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


def run_status_row(
    workflow_id: str,
    status: str,
    *,
    output: tuple[bytes, str] | None = None,
    error: tuple[bytes | None, str] | None = None,
) -> Row:
    """A ``run_status_log`` row: the status, when, which process, and output or error."""
    output_blob, output_text = output if output is not None else (None, None)
    error_blob, error_text = error if error is not None else (None, None)
    return (workflow_id, status, now(), os.getpid(), output_blob, output_text, error_blob, error_text)


now: Callable[[], float] = time.time
"""The current time in seconds since the epoch: what rows put in timestamp columns.

Rows carry floats, not datetimes: three rows per event take the time, and both making a
float and handing it to Arrow cost a tenth of an aware datetime (see `_seconds_to_timestamps`).
"""


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
        # A statement is a transaction of its own: BEGIN and COMMIT would add ~0.3 ms to
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
    return isinstance(op, Execute) or (len(op) == 1 and _by_values(next(iter(op.values()))))


def _by_values(rows: list[Row]) -> bool:
    """Whether ``rows`` go in by one ``INSERT ... VALUES`` (few), not by Arrow slices."""
    return len(rows) < _ARROW_THRESHOLD


def _apply(con: duckdb.DuckDBPyConnection, op: Op) -> None:
    if isinstance(op, Execute):
        con.execute(op.sql, op.params)
    else:
        _append_all(con, op)


def _append_all(con: duckdb.DuckDBPyConnection, pending: dict[str, list[Row]]) -> None:
    for shape in sorted(pending, key=INSERT_ORDER.__getitem__):  # `seq` follows this order
        rows = pending[shape]
        table, columns = ROW_SHAPES.get(shape) or (shape, COLUMNS[shape])
        if _by_values(rows):
            used = _filled_columns(len(columns), rows)
            placeholders = "(" + ", ".join("?" * len(used)) + ")"
            sql = f"INSERT INTO {table} ({', '.join(columns[i] for i in used)}) VALUES " + ", ".join(
                [placeholders] * len(rows)
            )
            values = [
                _datetime(row[i]) if columns[i] in TIMESTAMP_COLUMNS else row[i] for row in rows for i in used
            ]
            con.execute(sql, values)
        else:
            # In slices: converting 300,000 rows to Arrow at once costs ~60 MB of peak
            # memory. Still one transaction (the caller's), so a batch stays all or nothing.
            for start in range(0, len(rows), _ARROW_SLICE_ROWS):
                arrow_rows = _to_arrow(columns, rows[start : start + _ARROW_SLICE_ROWS])
                # Registered by name: DuckDB does not have to find it among Python's frames.
                con.register("evkit_rows", arrow_rows)
                try:
                    con.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM evkit_rows")
                finally:
                    con.unregister("evkit_rows")
                del arrow_rows


def _filled_columns(width: int, rows: list[Row]) -> list[int]:
    """The positions of the columns some row fills (all, if none does).

    The others are NULL anyway, and each column costs DuckDB binding work: leaving out
    five empty columns took ~0.1 ms off a checkpoint's commit (schema version 2). Now a
    checkpoint not handed over leaves its three ``inbox_*`` columns empty, and an event's
    state row the columns of its other states. Rows of NULLs only keep every column, so
    they fail on the table's constraints as before.
    """
    return [i for i in range(width) if any(row[i] is not None for row in rows)] or list(range(width))


def _to_arrow(columns: tuple[str, ...], rows: list[Row]) -> pa.Table:
    """``rows`` (of ``columns``) as an Arrow table, timestamp columns converted from seconds."""
    pa, types = _arrow()
    try:
        # One pass in C over the tuples (a struct array), ~40% cheaper than a Python
        # list per column; timestamps come in as float seconds.
        row_type = pa.struct(
            [
                (name, pa.float64() if name in TIMESTAMP_COLUMNS else types.get(name, pa.string()))
                for name in columns
            ]
        )
        fields = pa.RecordBatch.from_struct_array(pa.array(rows, type=row_type)).columns
        arrays = [
            _seconds_to_timestamps(pa, a) if name in TIMESTAMP_COLUMNS else a
            for a, name in zip(fields, columns, strict=True)
        ]
    except (TypeError, pa.ArrowInvalid, pa.ArrowTypeError):  # a datetime in a timestamp column
        arrays = [
            pa.array([_datetime(row[i]) for row in rows], type=types[name])
            if name in TIMESTAMP_COLUMNS
            else pa.array([row[i] for row in rows], type=types.get(name, pa.string()))
            for i, name in enumerate(columns)
        ]
    return pa.Table.from_arrays(arrays, names=list(columns))


def _datetime(value: object) -> object:
    """A row's timestamp (epoch seconds) as the aware datetime DuckDB takes as a parameter."""
    if isinstance(value, float | int):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    return value  # None, or already a datetime


def _seconds_to_timestamps(pa: ModuleType, seconds: pa.Array) -> pa.Array:
    """Float epoch seconds as ``timestamp[us, UTC]``, rounded to the microsecond, in C."""
    import pyarrow.compute as pc  # part of pyarrow (numpy is optional for pyarrow)

    micros = pc.cast(pc.round(pc.multiply(seconds, 1_000_000)), pa.int64())
    return micros.cast(_arrow_types()["recorded_at"])


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

    def append(self, table: str, row: Row) -> asyncio.Future[None]:
        """Queue a row; the returned future resolves once it is committed."""
        if self._failure is not None:  # the hot path of every row: kept short
            self._raise_failed()
        rows = self._rows.get(table)
        if rows is None:
            rows = self._rows[table] = []
        rows.append(row)
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
                # waits register, that would keep all their rows (~40 MB for 100,000).
                del ops

    async def aclose(self) -> None:
        """Write what is queued, then stop the queue (the writer stays open)."""
        await self.flush()
        self._closing = True
        self._wakeup.set()
        await self._task
