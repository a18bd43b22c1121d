"""The store's row shapes: one typed record per log table, and how records become SQL or Arrow.

Everything that writes to the store builds one of these records; nothing else builds a
store row. A record is a ``NamedTuple``: typed and named for whoever builds it (mypy
checks each field), a plain tuple for the writer, which turns a batch of them into one
``INSERT ... VALUES`` (a few rows) or Arrow slices (many). Timestamps are float epoch
seconds in records and ``TIMESTAMPTZ`` in the store. This module runs no SQL of its own
but the INSERTs of :func:`insert_records`.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import time
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

import duckdb

if TYPE_CHECKING:
    import pyarrow as pa


class RunDefinitionRecord(NamedTuple):
    """A run's DAG, written when the run starts and again by each re-run that changes it.

    Table ``run_definitions``: the row with the highest ``seq`` is the run's DAG now.
    ``fingerprints_blob`` holds the code digests a re-run derives each step's fingerprint
    from (``evkit.execution.prints``; rows written before it hold every step's fingerprints);
    ``revision`` counts the definitions (``None`` for the first, as stores before
    version 4 have).
    """

    workflow_id: str
    created_at: float
    dag_blob: bytes
    output_step: str
    user_metadata: str | None
    fingerprints_blob: bytes | None = None
    revision: int | None = None


class StepGenerationRecord(NamedTuple):
    """A step's checkpoint superseded: it runs again, as ``generation`` (table ``step_generations``).

    The step's rows after this one belong to the new generation. ``reason`` says why it
    runs again (``code changed``, ``input changed``, ``added``, ``repoll``, ``rerun``), or
    ``removed`` for a step the run's new DAG no longer has.
    """

    workflow_id: str
    step_id: str
    generation: int
    revision: int
    reason: str
    recorded_at: float


class RunStatusRecord(NamedTuple):
    """A run's status from now on, with its output or error (table ``run_status_log``)."""

    workflow_id: str
    status: str
    recorded_at: float
    owner_pid: int
    output_blob: bytes | None = None
    output_text: str | None = None
    error_blob: bytes | None = None
    error_text: str | None = None


class StepRecord(NamedTuple):
    """A function step's attempt entering a state (table ``step_log``)."""

    workflow_id: str
    step_id: str
    name: str
    kind: str
    state: str
    attempt: int
    recorded_at: float
    result_blob: bytes | None
    result_text: str | None
    error_text: str | None
    upstream: str | None  # on the first attempt's "running" row only


class EventStateRecord(NamedTuple):
    """An event step entering a state other than checkpointed (table ``event_state_log``)."""

    workflow_id: str
    step_id: str
    event_id: str
    state: str
    attempt: int
    recorded_at: float
    listener: str | None  # this and the next three on "waiting" rows only
    args_text: str | None
    deadline: float | None
    timeout_at: float | None
    error_text: str | None  # on "failed" rows only


class EventCommitRecord(NamedTuple):
    """An event's commit at its source: the first six columns of ``event_state_log``.

    Its own record because there is one per event and the other columns are empty: a
    narrow row costs DuckDB less to convert and bind.
    """

    workflow_id: str
    step_id: str
    event_id: str
    state: str
    attempt: int
    recorded_at: float


class EventCheckpointRecord(NamedTuple):
    """An event's checkpoint: the payload the run will use (table ``event_checkpoint_log``).

    The ``inbox_*`` columns are filled when the event was sent to the step while it
    waited: the checkpoint is then also the send's record (no ``inbox`` row is written).
    """

    workflow_id: str
    step_id: str
    attempt: int
    recorded_at: float
    received_at: float
    source_id: str | None
    payload_blob: bytes
    payload_text: str
    inbox_key: str | None = None
    inbox_sent_at: float | None = None
    inbox_source: str | None = None


class InboxRecord(NamedTuple):
    """An event sent to a run before a step took it (table ``inbox``)."""

    workflow_id: str
    key: str
    event_id: str
    sent_at: float
    payload_blob: bytes
    payload_text: str
    source: str


Record = (
    RunDefinitionRecord
    | StepGenerationRecord
    | RunStatusRecord
    | StepRecord
    | EventStateRecord
    | EventCommitRecord
    | EventCheckpointRecord
    | InboxRecord
)

# Each record's table, in the order a batch inserts them. The views find an object's
# latest row by `seq`, which follows the INSERT statements, so rows of one object that
# share a batch must be inserted in the order they happened. Only an event's waiting row
# and its checkpoint can share a batch (an event sent before its step waits): the state
# table comes first. Its commit row, and a failure after the checkpoint, are queued only
# once the checkpoint is durable, so they are in a later batch.
TABLES: dict[type[Record], str] = {
    RunDefinitionRecord: "run_definitions",
    # Before the rows of the generations it starts (they come in later batches anyway).
    StepGenerationRecord: "step_generations",
    RunStatusRecord: "run_status_log",
    StepRecord: "step_log",
    EventStateRecord: "event_state_log",
    EventCheckpointRecord: "event_checkpoint_log",
    InboxRecord: "inbox",
    EventCommitRecord: "event_state_log",
}
_INSERT_ORDER = {kind: position for position, kind in enumerate(TABLES)}

TIMESTAMP_COLUMNS = frozenset(
    {"created_at", "recorded_at", "deadline", "timeout_at", "received_at", "sent_at", "inbox_sent_at"}
)
_BLOB_COLUMNS = ("fingerprints_blob", "dag_blob", "output_blob", "error_blob", "result_blob", "payload_blob")

now: Callable[[], float] = time.time
"""The current time in seconds since the epoch: what records put in timestamp columns.

Records carry floats, not datetimes: making a float and handing it to Arrow are much
cheaper than an aware datetime, and every event takes the time several times.
"""


def run_status(
    workflow_id: str,
    status: str,
    *,
    output: tuple[bytes, str] | None = None,
    error: tuple[bytes | None, str] | None = None,
) -> RunStatusRecord:
    """A run's status now, recorded by this process, with its output or error."""
    output_blob, output_text = output if output is not None else (None, None)
    error_blob, error_text = error if error is not None else (None, None)
    return RunStatusRecord(
        workflow_id, status, now(), os.getpid(), output_blob, output_text, error_blob, error_text
    )


# ---------------------------------------------------------------------- writing records

# Below this many rows one multi-row INSERT ... VALUES is cheaper than building an Arrow
# table (docs/performance.md, "Where the fast paths are").
_ARROW_THRESHOLD = 8
# Arrow conversion happens in slices, so a huge batch never holds all its rows twice.
_ARROW_SLICE_ROWS = 20_000


def by_values(records: list[Record]) -> bool:
    """Whether ``records`` go in by one ``INSERT ... VALUES`` (few), not by Arrow slices."""
    return len(records) < _ARROW_THRESHOLD


def insert_order(kinds: Iterable[type[Record]]) -> list[type[Record]]:
    """``kinds`` in the order a batch must insert them (see ``TABLES``)."""
    return sorted(kinds, key=_INSERT_ORDER.__getitem__)


def insert_records(con: duckdb.DuckDBPyConnection, kind: type[Record], records: list[Record]) -> None:
    """Insert ``records`` (all of type ``kind``) into their table, inside the caller's transaction."""
    table, columns = TABLES[kind], kind._fields
    if by_values(records):
        used = _filled_columns(len(columns), records)
        placeholders = "(" + ", ".join("?" * len(used)) + ")"
        sql = f"INSERT INTO {table} ({', '.join(columns[i] for i in used)}) VALUES " + ", ".join(
            [placeholders] * len(records)
        )
        values = [
            _datetime(row[i]) if columns[i] in TIMESTAMP_COLUMNS else row[i] for row in records for i in used
        ]
        con.execute(sql, values)
        return
    for start in range(0, len(records), _ARROW_SLICE_ROWS):
        arrow_rows = _to_arrow(columns, records[start : start + _ARROW_SLICE_ROWS])
        # Registered by name: DuckDB does not have to find it among Python's frames.
        con.register("evkit_rows", arrow_rows)
        try:
            con.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM evkit_rows")
        finally:
            con.unregister("evkit_rows")
        del arrow_rows


def _filled_columns(width: int, records: list[Record]) -> list[int]:
    """The positions of the columns some record fills (all, if none does).

    The others are NULL anyway, and each named column costs DuckDB binding work on the
    path of a lone checkpoint. Records of NULLs only keep every column, so they fail on
    the table's constraints as before.
    """
    return [i for i in range(width) if any(row[i] is not None for row in records)] or list(range(width))


def _arrow() -> tuple[ModuleType, dict[str, pa.DataType]]:
    """The pyarrow module and the Arrow type of each column that is not a string.

    pyarrow (with numpy) is a large part of ``import evkit``'s time, and small batches
    never need it: it is imported on the writer thread by the first batch that does.
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
    types.update(dict.fromkeys(_BLOB_COLUMNS, pa.binary()))
    types.update(owner_pid=pa.int32(), attempt=pa.int32(), generation=pa.int32(), revision=pa.int32())
    return types


def _to_arrow(columns: tuple[str, ...], records: list[Record]) -> pa.Table:
    """``records`` (of ``columns``) as an Arrow table, timestamp columns converted from seconds."""
    pa, types = _arrow()
    try:
        # One pass in C over the tuples (a struct array) instead of a Python list per
        # column; timestamps come in as float seconds.
        row_type = pa.struct(
            [
                (name, pa.float64() if name in TIMESTAMP_COLUMNS else types.get(name, pa.string()))
                for name in columns
            ]
        )
        fields = pa.RecordBatch.from_struct_array(pa.array(records, type=row_type)).columns
        arrays = [
            _seconds_to_timestamps(pa, a) if name in TIMESTAMP_COLUMNS else a
            for a, name in zip(fields, columns, strict=True)
        ]
    except (TypeError, pa.ArrowInvalid, pa.ArrowTypeError):  # a datetime in a timestamp column
        arrays = [
            pa.array([_datetime(row[i]) for row in records], type=types[name])
            if name in TIMESTAMP_COLUMNS
            else pa.array([row[i] for row in records], type=types.get(name, pa.string()))
            for i, name in enumerate(columns)
        ]
    return pa.Table.from_arrays(arrays, names=list(columns))


def _datetime(value: object) -> object:
    """A record's timestamp (epoch seconds) as the aware datetime DuckDB takes as a parameter."""
    if isinstance(value, float | int):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    return value  # None, or already a datetime


def _seconds_to_timestamps(pa: ModuleType, seconds: pa.Array) -> pa.Array:
    """Float epoch seconds as ``timestamp[us, UTC]``, rounded to the microsecond, in C."""
    import pyarrow.compute as pc  # part of pyarrow (numpy is optional for pyarrow)

    micros = pc.cast(pc.round(pc.multiply(seconds, 1_000_000)), pa.int64())
    return micros.cast(_arrow_types()["recorded_at"])
