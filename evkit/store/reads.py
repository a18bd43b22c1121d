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
    fingerprints_blob: bytes | None = None  # the latest definition's record (None before version 4)
    revision: int = 1  # how many times the run was defined (a re-run that changed it adds one)
    generations: dict[str, int] = field(default_factory=dict)  # a step's current one, if not 1
    # Every step id with rows in its current generation (run, waited or checkpointed).
    started: set[str] = field(default_factory=set)


@fewer_gc_passes()  # a big run's checkpoints are hundreds of thousands of records, all kept
def load_run(
    con: duckdb.DuckDBPyConnection, workflow_id: str, *, with_steps: bool = True
) -> StoredRun | None:
    """Load a run, or ``None`` if the store has no run with this id."""
    # The latest definition is the run's DAG now (a re-run adds one; see schema version 4).
    head = con.execute(
        """
        SELECT (SELECT min(created_at) FROM run_definitions WHERE workflow_id = $1),
               d.dag_blob, d.user_metadata, s.status, s.output_blob, s.error_blob,
               s.error_text, s.recorded_at, d.fingerprints_blob, coalesce(d.revision, 1)
        FROM (SELECT * FROM run_definitions WHERE workflow_id = $1 ORDER BY seq DESC LIMIT 1) d,
             (SELECT * FROM run_status_log WHERE workflow_id = $1 ORDER BY seq DESC LIMIT 1) s
        """,
        [workflow_id],
    ).fetchone()
    if head is None:
        return None
    (
        created_at,
        dag_blob,
        user_metadata,
        status,
        output_blob,
        error_blob,
        error_text,
        updated_at,
        fingerprints_blob,
        revision,
    ) = head
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
        fingerprints_blob=fingerprints_blob,
        revision=revision,
    )
    if not with_steps:
        return run
    # Rows of a superseded generation (before the step's latest generation row) are history.
    generations = con.execute(
        """
        SELECT step_id, max(generation), max(seq) FROM step_generations
        WHERE workflow_id = ? GROUP BY step_id
        """,
        [workflow_id],
    ).fetchall()
    run.generations.update((step_id, generation) for step_id, generation, _ in generations)
    since = {step_id: seq for step_id, _, seq in generations}
    for step_id, state, blob, attempt, seq in con.execute(
        """
        SELECT step_id, state, result_blob, attempt, seq FROM step_log
        WHERE workflow_id = ? AND state IN ('succeeded', 'continued', 'running')
        """,
        [workflow_id],
    ).fetchall():
        if since and seq < since.get(step_id, -1):
            continue
        run.started.add(step_id)
        if state == "succeeded":
            run.results[step_id] = blob
        elif state == "continued":
            run.continuations[step_id] = blob
        else:
            run.attempts[step_id] = max(run.attempts.get(step_id, 0), attempt)
    for step_id, polls, payload, committed, timeout_at, source_id, deadline in con.execute(
        """
        WITH since AS (
            SELECT step_id, max(seq) AS seq FROM step_generations WHERE workflow_id = $1
            GROUP BY step_id
        )
        SELECT e.step_id,
               count(*) FILTER (WHERE e.state = 'waiting'),
               arg_max(e.payload_blob, e.seq) FILTER (WHERE e.state = 'checkpointed'),
               count(*) FILTER (WHERE e.state = 'committed') > 0,
               max(e.timeout_at),
               arg_max(e.source_id, e.seq) FILTER (WHERE e.state = 'checkpointed'),
               arg_min(e.deadline, e.seq) FILTER (WHERE e.state = 'waiting')
        FROM event_log e LEFT JOIN since g ON g.step_id = e.step_id
        WHERE e.workflow_id = $1 AND (g.seq IS NULL OR e.seq > g.seq)
        GROUP BY e.step_id
        """,
        [workflow_id],
    ).fetchall():
        run.started.add(step_id)
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
        -- the current generation's rows (a re-run may have run the step again)
        WHERE seq > coalesce(
            (SELECT max(seq) FROM step_generations WHERE workflow_id = $1 AND step_id = $2), -1)
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
        "step_generations",
        "step_log",
        "event_state_log",
        "event_checkpoint_log",
        "inbox",
    )
]

FORK_RUN_SQL = [
    # The source's current definition and status, then every row of its steps and events
    # (their `seq` kept, so each step's rows stay in order and in their generations). The
    # inbox is not copied: events sent to the source and not taken stay the source's.
    """
    INSERT INTO run_definitions
    SELECT * REPLACE ($1 AS workflow_id, now() AS created_at) FROM run_definitions
    WHERE workflow_id = $2 ORDER BY seq DESC LIMIT 1
    """,
    """
    INSERT INTO run_status_log
    SELECT * REPLACE ($1 AS workflow_id) FROM run_status_log
    WHERE workflow_id = $2 ORDER BY seq DESC LIMIT 1
    """,
    *(
        f"INSERT INTO {table} SELECT * REPLACE ($1 AS workflow_id) FROM {table} WHERE workflow_id = $2"
        for table in ("step_log", "event_state_log", "event_checkpoint_log", "step_generations")
    ),
]
"""Statements that copy a run (parameters: the new run's id, the source's id): ``workflow.fork``."""
