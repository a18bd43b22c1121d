"""The floor: the same work as evkit does, with plain asyncio and plain DuckDB Arrow appends.

:class:`FloorStore` is the least a durable event system must do: one writer thread, rows
batched on the loop, and each batch appended as Arrow tables in one committed
transaction (group commit). No evkit import, no snapshots, no pickling of functions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt

import duckdb
import pyarrow as pa

_TS = pa.timestamp("us", tz="UTC")

# Three logs like evkit's inbox, event_log and step_log, reduced to what a resume needs.
SCHEMA = {
    "inbox": [("key", pa.string()), ("event_id", pa.string()), ("sent_at", _TS), ("payload", pa.binary())],
    "events": [("step", pa.string()), ("state", pa.string()), ("recorded_at", _TS), ("payload", pa.binary())],
    "results": [("step", pa.string()), ("state", pa.string()), ("recorded_at", _TS), ("result", pa.binary())],
}
_SQL_TYPES = {pa.string(): "VARCHAR", _TS: "TIMESTAMPTZ", pa.binary(): "BLOB"}


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables of :data:`SCHEMA` (if missing) on ``con``."""
    for table, columns in SCHEMA.items():
        cols = ", ".join(f"{name} {_SQL_TYPES[kind]}" for name, kind in columns)
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({cols})")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class FloorStore:
    """A DuckDB file with :data:`SCHEMA`, written by one thread in batches from one loop."""

    def __init__(self, path: str) -> None:
        self._thread = concurrent.futures.ThreadPoolExecutor(1)
        self._con = self._thread.submit(duckdb.connect, path).result()
        create_tables(self._con)
        self._rows: dict[str, list[tuple[object, ...]]] = {}
        self._batch: asyncio.Future[None] | None = None
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._drain())
        self.batches = 0

    def append(self, table: str, row: tuple[object, ...]) -> asyncio.Future[None]:
        """Queue a row; the future resolves when its batch is committed."""
        self._rows.setdefault(table, []).append(row)
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_future()
            self._wakeup.set()
        return self._batch

    def append_many(self, table: str, rows: list[tuple[object, ...]]) -> asyncio.Future[None]:
        self._rows.setdefault(table, []).extend(rows)
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_future()
            self._wakeup.set()
        return self._batch

    async def flush(self) -> None:
        while self._batch is not None:
            await asyncio.shield(self._batch)

    async def _drain(self) -> None:
        while True:
            await self._wakeup.wait()
            await asyncio.sleep(0)  # let rows of tasks woken with us join the batch
            self._wakeup.clear()
            rows, batch = self._rows, self._batch
            self._rows, self._batch = {}, None
            if batch is None:
                continue
            await asyncio.wrap_future(self._thread.submit(_write, self._con, rows))
            self.batches += 1
            batch.set_result(None)

    async def aclose(self) -> None:
        await self.flush()
        self._task.cancel()
        self._thread.submit(self._con.close).result()
        self._thread.shutdown()


def _write(con: duckdb.DuckDBPyConnection, rows: dict[str, list[tuple[object, ...]]]) -> None:
    one_statement = len(rows) == 1  # a statement is a transaction of its own
    if not one_statement:
        con.execute("BEGIN TRANSACTION")
    for table, table_rows in rows.items():
        columns = SCHEMA[table]
        arrays = [pa.array([r[i] for r in table_rows], type=kind) for i, (_, kind) in enumerate(columns)]
        batch = pa.Table.from_arrays(arrays, names=[name for name, _ in columns])  # noqa: F841 - read by DuckDB
        con.execute(f"INSERT INTO {table} SELECT * FROM batch")
    if not one_statement:
        con.execute("COMMIT")
