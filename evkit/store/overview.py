"""What the command line shows of a store: its runs, and one run's steps and events.

Every read goes through the documented views (``workflows``, ``steps``, ``events``), so
the CLI shows exactly what a user's SQL sees. Rows come back as plain dicts with the
views' column names; turning them into tables or JSON is the CLI's job.
"""

from __future__ import annotations

import duckdb

RUN_COLUMNS = ("workflow_id", "status", "created_at", "updated_at", "ended_at")
STEP_COLUMNS = (
    "step_id",
    "name",
    "kind",
    "state",
    "generation",
    "reused",
    "attempts",
    "started_at",
    "ended_at",
    "result",
    "error",
)
EVENT_COLUMNS = (
    "step_id",
    "listener",
    "args",
    "state",
    "generation",
    "reused",
    "waiting_at",
    "received_at",
    "checkpointed_at",
    "committed_at",
    "deadline",
    "timeout_at",
    "payload",
    "error",
)


def _rows(
    con: duckdb.DuckDBPyConnection, columns: tuple[str, ...], sql: str, params: list[object]
) -> list[dict[str, object]]:
    query = sql.format(columns=", ".join(columns))
    return [dict(zip(columns, row, strict=True)) for row in con.execute(query, params).fetchall()]


def list_runs(con: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    """Every run of the ``workflows`` view (stored status), oldest first."""
    return _rows(con, RUN_COLUMNS, "SELECT {columns} FROM workflows ORDER BY created_at, workflow_id", [])


def run_overview(con: duckdb.DuckDBPyConnection, workflow_id: str) -> dict[str, object] | None:
    """One run: its ``workflows`` row with ``output``, ``error``, ``steps`` and ``events``.

    ``None`` if the store has no such run. Steps and events are in the order they started
    (steps not started yet last).
    """
    runs = _rows(
        con,
        (*RUN_COLUMNS, "output", "error"),
        "SELECT {columns} FROM workflows WHERE workflow_id = ?",
        [workflow_id],
    )
    if not runs:
        return None
    run = runs[0]
    run["steps"] = _rows(
        con,
        STEP_COLUMNS,
        "SELECT {columns} FROM steps WHERE workflow_id = ? ORDER BY started_at NULLS LAST, step_id",
        [workflow_id],
    )
    run["events"] = _rows(
        con,
        EVENT_COLUMNS,
        "SELECT {columns} FROM events WHERE workflow_id = ? ORDER BY waiting_at NULLS LAST, step_id",
        [workflow_id],
    )
    return run
