"""Loads from the store: what a resume needs, statuses, and the inbox.

Each function takes the writer's connection and runs on the writer thread (see
``StoreWriter.submit``); blobs are returned as bytes and unpickled by the caller, lazily.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb

from evkit.gcscope import fewer_gc_passes


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    """What the store knows of one event step."""

    poll_attempts: int = 0
    payload_blob: bytes | None = None
    committed: bool = False
    timeout_at: dt.datetime | None = None
    source_id: str | None = None
    deadline: dt.datetime | None = None  # as its first wait described it

    @property
    def checkpointed(self) -> bool:
        """True once the event was durably written."""
        return self.payload_blob is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRun:
    """Everything a resume needs about one run."""

    workflow_id: str
    status: str
    created_at: dt.datetime
    dag_blob: bytes
    user_metadata: str | None
    output_blob: bytes | None = None
    error_blob: bytes | None = None
    error_text: str | None = None
    updated_at: dt.datetime | None = None
    results: dict[str, bytes] = field(default_factory=dict)
    continuations: dict[str, bytes] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    events: dict[str, StoredEvent] = field(default_factory=dict)


@fewer_gc_passes()  # a big run's checkpoints are hundreds of thousands of records, all kept
def load_run(
    con: duckdb.DuckDBPyConnection, workflow_id: str, *, with_steps: bool = True
) -> StoredRun | None:
    """Load a run, or ``None`` if the store has no run with this id."""
    head = con.execute(
        """
        SELECT d.created_at, d.dag_blob, d.user_metadata, s.status, s.output_blob, s.error_blob,
               s.error_text, s.recorded_at
        FROM run_definitions d,
             (SELECT * FROM run_status_log WHERE workflow_id = $1 ORDER BY seq DESC LIMIT 1) s
        WHERE d.workflow_id = $1
        """,
        [workflow_id],
    ).fetchone()
    if head is None:
        return None
    created_at, dag_blob, user_metadata, status, output_blob, error_blob, error_text, updated_at = head
    run = StoredRun(
        workflow_id=workflow_id,
        status=status,
        created_at=created_at,
        dag_blob=dag_blob,
        user_metadata=user_metadata,
        output_blob=output_blob,
        error_blob=error_blob,
        error_text=error_text,
        updated_at=updated_at,
    )
    if not with_steps:
        return run
    for step_id, state, blob, attempt in con.execute(
        """
        SELECT step_id, state, result_blob, attempt FROM step_log
        WHERE workflow_id = ? AND state IN ('succeeded', 'continued', 'running')
        """,
        [workflow_id],
    ).fetchall():
        if state == "succeeded":
            run.results[step_id] = blob
        elif state == "continued":
            run.continuations[step_id] = blob
        else:
            run.attempts[step_id] = max(run.attempts.get(step_id, 0), attempt)
    for step_id, polls, payload, committed, timeout_at, source_id, deadline in con.execute(
        """
        SELECT step_id,
               count(*) FILTER (WHERE state = 'waiting'),
               arg_max(payload_blob, seq) FILTER (WHERE state = 'checkpointed'),
               count(*) FILTER (WHERE state = 'committed') > 0,
               max(timeout_at),
               arg_max(source_id, seq) FILTER (WHERE state = 'checkpointed'),
               arg_min(deadline, seq) FILTER (WHERE state = 'waiting')
        FROM event_log WHERE workflow_id = ? GROUP BY step_id
        """,
        [workflow_id],
    ).fetchall():
        run.events[step_id] = StoredEvent(
            poll_attempts=polls,
            payload_blob=payload,
            committed=committed,
            timeout_at=timeout_at,
            source_id=source_id,
            deadline=deadline,
        )
    return run


def list_statuses(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """Every run's id and stored status, oldest first."""
    return [
        (row[0], row[1])
        for row in con.execute(
            """
            SELECT workflow_id, arg_max(status, seq) FROM run_status_log
            GROUP BY workflow_id ORDER BY min(seq)
            """
        ).fetchall()
    ]


def step_metadata(con: duckdb.DuckDBPyConnection, workflow_id: str, step_id: str) -> dict[str, object] | None:
    """Start and end times, state, attempts and last error of a step, or ``None`` if it never ran."""
    row = con.execute(
        """
        SELECT min(recorded_at),
               max(recorded_at) FILTER (WHERE state IN ('succeeded', 'failed', 'cancelled', 'committed')),
               arg_max(state, seq), max(attempt),
               arg_max(error_text, seq) FILTER (WHERE error_text IS NOT NULL)
        FROM (SELECT recorded_at, state, attempt, seq, error_text FROM step_log
              WHERE workflow_id = $1 AND step_id = $2
              UNION ALL
              SELECT recorded_at, state, attempt, seq, error_text FROM event_log
              WHERE workflow_id = $1 AND step_id = $2)
        """,
        [workflow_id, step_id],
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return {"start_time": row[0], "end_time": row[1], "state": row[2], "attempts": row[3], "error": row[4]}


def unclaimed_inbox_of_run(con: duckdb.DuckDBPyConnection, workflow_id: str) -> list[tuple[str, str, bytes]]:
    """Every inbox event of a run that no event step has checkpointed, oldest first.

    Returns ``(key, event_id, payload_blob)`` rows; one read primes the inbox's index.
    """
    return [
        (row[0], row[1], row[2])
        for row in con.execute(
            """
            SELECT i.key, i.event_id, i.payload_blob FROM inbox i
            WHERE i.workflow_id = $1
              AND NOT EXISTS (SELECT 1 FROM event_checkpoint_log e
                              WHERE e.workflow_id = $1 AND e.source_id = i.event_id)
            ORDER BY i.seq
            """,
            [workflow_id],
        ).fetchall()
    ]


def inbox_key_of(con: duckdb.DuckDBPyConnection, workflow_id: str, event_id: str) -> str | None:
    """The key an event with this id was already sent under to this run, or ``None``.

    Looks in the inbox and in the checkpoints an inbox handed its events over to.
    """
    row = con.execute(
        """
        SELECT key FROM inbox WHERE workflow_id = $1 AND event_id = $2
        UNION ALL
        SELECT inbox_key FROM event_checkpoint_log
        WHERE workflow_id = $1 AND source_id = $2 AND inbox_key IS NOT NULL
        LIMIT 1
        """,
        [workflow_id, event_id],
    ).fetchone()
    return None if row is None else str(row[0])


def run_exists(con: duckdb.DuckDBPyConnection, workflow_id: str) -> bool:
    """True if the store has a run with this id."""
    return (
        con.execute("SELECT 1 FROM run_definitions WHERE workflow_id = ?", [workflow_id]).fetchone()
        is not None
    )


def stored_run_status(con: duckdb.DuckDBPyConnection, workflow_id: str) -> str | None:
    """The run's last stored status (e.g. ``'SUCCESSFUL'``), or ``None`` if the store has no such run."""
    if not run_exists(con, workflow_id):
        return None
    row = con.execute(
        "SELECT arg_max(status, seq) FROM run_status_log WHERE workflow_id = ?", [workflow_id]
    ).fetchone()
    # A defined run with no status row yet is being registered: it is about to run.
    return "RUNNING" if row is None or row[0] is None else str(row[0])


DELETE_RUN_SQL = [
    f"DELETE FROM {table} WHERE workflow_id = ?"
    for table in (
        "run_definitions",
        "run_status_log",
        "step_log",
        "event_state_log",
        "event_checkpoint_log",
        "inbox",
    )
]
