"""The store's schema: tables, user-facing views, and the migrations between versions.

Every table is an append-only log (DuckDB appends are cheap, updates are not); the views
``workflows``, ``steps``, ``events``, ``inbox_events`` and ``step_history`` fold the logs into one row per
object and are the documented interface for users' SQL (see docs/store.md). The view
``event_log`` joins the two event tables into the one log they were up to version 2.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

SCHEMA_VERSION = 4
STORE_FORMAT = "evkit-store"

_V1 = """
CREATE SEQUENCE evkit_seq;
CREATE TABLE run_definitions (
    workflow_id VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    dag_blob BLOB NOT NULL,
    output_step VARCHAR NOT NULL,
    user_metadata VARCHAR,
    seq BIGINT DEFAULT nextval('evkit_seq')
);
CREATE TABLE run_status_log (
    workflow_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    owner_pid INTEGER,
    output_blob BLOB,
    output_text VARCHAR,
    error_blob BLOB,
    error_text VARCHAR,
    seq BIGINT DEFAULT nextval('evkit_seq')
);
CREATE TABLE step_log (
    workflow_id VARCHAR NOT NULL,
    step_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    state VARCHAR NOT NULL,
    attempt INTEGER NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    result_blob BLOB,
    result_text VARCHAR,
    error_text VARCHAR,
    upstream VARCHAR,
    seq BIGINT DEFAULT nextval('evkit_seq')
);
CREATE TABLE event_log (
    workflow_id VARCHAR NOT NULL,
    step_id VARCHAR NOT NULL,
    event_id VARCHAR NOT NULL,
    state VARCHAR NOT NULL,
    attempt INTEGER NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    listener VARCHAR,
    args_text VARCHAR,
    deadline TIMESTAMPTZ,
    timeout_at TIMESTAMPTZ,
    received_at TIMESTAMPTZ,
    source_id VARCHAR,
    payload_blob BLOB,
    payload_text VARCHAR,
    error_text VARCHAR,
    seq BIGINT DEFAULT nextval('evkit_seq')
);
CREATE TABLE inbox (
    workflow_id VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    event_id VARCHAR NOT NULL,
    sent_at TIMESTAMPTZ NOT NULL,
    payload_blob BLOB NOT NULL,
    payload_text VARCHAR,
    source VARCHAR,
    seq BIGINT DEFAULT nextval('evkit_seq')
);

CREATE VIEW workflows AS
WITH latest AS (
    SELECT workflow_id,
           arg_max(status, seq) AS status,
           max(recorded_at) AS updated_at,
           arg_max(output_text, seq) AS output,
           arg_max(error_text, seq) AS error
    FROM run_status_log GROUP BY workflow_id
)
SELECT d.workflow_id, l.status, d.created_at, l.updated_at,
       CASE WHEN l.status IN ('SUCCESSFUL', 'FAILED', 'CANCELED') THEN l.updated_at END AS ended_at,
       d.output_step, d.user_metadata, l.output, l.error
FROM run_definitions d JOIN latest l USING (workflow_id);

CREATE VIEW events AS
SELECT workflow_id, step_id,
       arg_max(event_id, seq) AS event_id,
       arg_max(listener, seq) FILTER (WHERE listener IS NOT NULL) AS listener,
       arg_max(args_text, seq) FILTER (WHERE args_text IS NOT NULL) AS args,
       arg_max(state, seq) AS state,
       max(recorded_at) FILTER (WHERE state = 'waiting') AS waiting_at,
       max(received_at) AS received_at,
       max(recorded_at) FILTER (WHERE state = 'checkpointed') AS checkpointed_at,
       max(recorded_at) FILTER (WHERE state = 'committed') AS committed_at,
       max(recorded_at) FILTER (WHERE state = 'cancelled') AS cancelled_at,
       max(recorded_at) FILTER (WHERE state = 'failed') AS failed_at,
       count(*) FILTER (WHERE state = 'waiting') AS poll_attempts,
       count(*) FILTER (WHERE state = 'committed') AS commits,
       arg_max(deadline, seq) FILTER (WHERE deadline IS NOT NULL) AS deadline,
       arg_max(timeout_at, seq) FILTER (WHERE timeout_at IS NOT NULL) AS timeout_at,
       arg_max(source_id, seq) FILTER (WHERE state = 'checkpointed') AS source_id,
       arg_max(payload_text, seq) FILTER (WHERE state = 'checkpointed') AS payload,
       arg_max(error_text, seq) FILTER (WHERE error_text IS NOT NULL) AS error
FROM event_log GROUP BY workflow_id, step_id;

CREATE VIEW steps AS
SELECT workflow_id, step_id,
       arg_max(name, seq) AS name,
       arg_max(kind, seq) AS kind,
       arg_max(state, seq) AS state,
       max(attempt) AS attempts,
       min(recorded_at) FILTER (WHERE state = 'running') AS started_at,
       max(recorded_at) FILTER (WHERE state IN ('succeeded', 'failed', 'cancelled')) AS ended_at,
       arg_max(result_text, seq) FILTER (WHERE state = 'succeeded') AS result,
       arg_max(error_text, seq) FILTER (WHERE error_text IS NOT NULL) AS error,
       arg_max(upstream, seq) AS upstream
FROM step_log GROUP BY workflow_id, step_id;

CREATE VIEW inbox_events AS
SELECT i.workflow_id, i.key, i.event_id, i.sent_at, i.payload_text AS payload, i.source,
       e.step_id AS delivered_to
FROM inbox i
LEFT JOIN (
    SELECT workflow_id, source_id, min(step_id) AS step_id
    FROM event_log WHERE state = 'checkpointed' AND source_id IS NOT NULL
    GROUP BY ALL
) e ON e.workflow_id = i.workflow_id AND e.source_id = i.event_id;
"""

# Version 2: an event sent to a step that was already waiting for it is stored once, by
# its checkpoint row, which also carries what the inbox row would have held (the inbox
# hands it over: see evkit.listeners.manual). One row, one statement, one commit on the
# path from send to step (the inbox row and the checkpoint were two INSERTs in one
# transaction, each with DuckDB's cost per statement). inbox_events shows both kinds of
# sent event (its first part repeats version 1's on purpose: each version's SQL stays
# whole, as it ran).
_V2 = """
ALTER TABLE event_log ADD COLUMN inbox_key VARCHAR;
ALTER TABLE event_log ADD COLUMN inbox_sent_at TIMESTAMPTZ;
ALTER TABLE event_log ADD COLUMN inbox_source VARCHAR;
CREATE OR REPLACE VIEW inbox_events AS
SELECT i.workflow_id, i.key, i.event_id, i.sent_at, i.payload_text AS payload, i.source,
       e.step_id AS delivered_to
FROM inbox i
LEFT JOIN (
    SELECT workflow_id, source_id, min(step_id) AS step_id
    FROM event_log WHERE state = 'checkpointed' AND source_id IS NOT NULL
    GROUP BY ALL
) e ON e.workflow_id = i.workflow_id AND e.source_id = i.event_id
UNION ALL
SELECT workflow_id, inbox_key AS key, source_id AS event_id, inbox_sent_at AS sent_at,
       payload_text AS payload, inbox_source AS source, step_id AS delivered_to
FROM event_log WHERE inbox_key IS NOT NULL;
"""


# Version 3: an event's checkpoint row goes to a narrow table of its own, the other event
# rows to one without the checkpoint's columns. DuckDB's cost for a row grows with the
# table's width, NULL columns included: the checkpoint, on the path from an event to
# its step, went from 18 columns to 11 (figures in docs/performance.md). `event_log`
# becomes a view with the old table's columns in their old order (version 2 added three
# after `seq`), so users' queries and evkit's reads see the same rows as before. The checkpoint rows
# drop `event_id`, which is always `<workflow_id>/<step_id>`.
_V3 = """
CREATE TABLE event_checkpoint_log (
    workflow_id VARCHAR NOT NULL,
    step_id VARCHAR NOT NULL,
    attempt INTEGER NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ,
    source_id VARCHAR,
    payload_blob BLOB,
    payload_text VARCHAR,
    inbox_key VARCHAR,
    inbox_sent_at TIMESTAMPTZ,
    inbox_source VARCHAR,
    seq BIGINT DEFAULT nextval('evkit_seq')
);
INSERT INTO event_checkpoint_log
SELECT workflow_id, step_id, attempt, recorded_at, received_at, source_id, payload_blob,
       payload_text, inbox_key, inbox_sent_at, inbox_source, seq
FROM event_log WHERE state = 'checkpointed';
DELETE FROM event_log WHERE state = 'checkpointed';
ALTER TABLE event_log DROP COLUMN received_at;
ALTER TABLE event_log DROP COLUMN source_id;
ALTER TABLE event_log DROP COLUMN payload_blob;
ALTER TABLE event_log DROP COLUMN payload_text;
ALTER TABLE event_log DROP COLUMN inbox_key;
ALTER TABLE event_log DROP COLUMN inbox_sent_at;
ALTER TABLE event_log DROP COLUMN inbox_source;
ALTER TABLE event_log RENAME TO event_state_log;
CREATE VIEW event_log AS
SELECT workflow_id, step_id, event_id, state, attempt, recorded_at, listener, args_text,
       deadline, timeout_at, NULL::TIMESTAMPTZ AS received_at, NULL::VARCHAR AS source_id,
       NULL::BLOB AS payload_blob, NULL::VARCHAR AS payload_text, error_text, seq,
       NULL::VARCHAR AS inbox_key, NULL::TIMESTAMPTZ AS inbox_sent_at,
       NULL::VARCHAR AS inbox_source
FROM event_state_log
UNION ALL
SELECT workflow_id, step_id, workflow_id || '/' || step_id, 'checkpointed', attempt,
       recorded_at, NULL, NULL, NULL, NULL, received_at, source_id, payload_blob,
       payload_text, NULL, seq, inbox_key, inbox_sent_at, inbox_source
FROM event_checkpoint_log;
"""


# Version 4: re-runs. A run may be defined again (``node.run(workflow_id=ID)`` with a
# changed DAG): ``run_definitions`` gets a row per revision, with the fingerprint of
# each step of that DAG (later evkit writes there the code digests the step fingerprints
# are derived from, see ``evkit.execution.prints``, and reads both forms). A step that
# runs again starts a new generation: a row in ``step_generations`` (its number and the
# reason it runs again). A step's rows written after its latest generation row belong to
# it; earlier ones stay, superseded. The views ``steps`` and ``events`` show each step's
# current generation (and whether it was reused by the run's latest revision);
# ``step_history`` shows every generation. Nothing is written per step on the path of a
# first run: a step with no generation row is in generation 1.
_V4 = """
ALTER TABLE run_definitions ADD COLUMN fingerprints_blob BLOB;
ALTER TABLE run_definitions ADD COLUMN revision INTEGER;
CREATE TABLE step_generations (
    workflow_id VARCHAR NOT NULL,
    step_id VARCHAR NOT NULL,
    generation INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    reason VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    seq BIGINT DEFAULT nextval('evkit_seq')
);
CREATE OR REPLACE VIEW workflows AS
WITH latest AS (
    SELECT workflow_id,
           arg_max(status, seq) AS status,
           max(recorded_at) AS updated_at,
           arg_max(output_text, seq) AS output,
           arg_max(error_text, seq) AS error
    FROM run_status_log GROUP BY workflow_id
), defined AS (
    SELECT workflow_id,
           min(created_at) AS created_at,
           arg_max(output_step, seq) AS output_step,
           arg_max(user_metadata, seq) AS user_metadata,
           coalesce(arg_max(revision, seq), 1) AS revision
    FROM run_definitions GROUP BY workflow_id
)
SELECT d.workflow_id, l.status, d.created_at, l.updated_at,
       CASE WHEN l.status IN ('SUCCESSFUL', 'FAILED', 'CANCELED') THEN l.updated_at END AS ended_at,
       d.output_step, d.user_metadata, l.output, l.error, d.revision
FROM defined d JOIN latest l USING (workflow_id);

CREATE OR REPLACE VIEW events AS
WITH generations AS (
    SELECT workflow_id, step_id, max(seq) AS since, max(generation) AS generation
    FROM step_generations GROUP BY ALL
), revised AS (
    SELECT workflow_id, max(seq) AS revised_at FROM run_definitions GROUP BY ALL
)
SELECT e.workflow_id, e.step_id,
       arg_max(e.event_id, e.seq) AS event_id,
       arg_max(e.listener, e.seq) FILTER (WHERE e.listener IS NOT NULL) AS listener,
       arg_max(e.args_text, e.seq) FILTER (WHERE e.args_text IS NOT NULL) AS args,
       arg_max(e.state, e.seq) AS state,
       max(e.recorded_at) FILTER (WHERE e.state = 'waiting') AS waiting_at,
       max(e.received_at) AS received_at,
       max(e.recorded_at) FILTER (WHERE e.state = 'checkpointed') AS checkpointed_at,
       max(e.recorded_at) FILTER (WHERE e.state = 'committed') AS committed_at,
       max(e.recorded_at) FILTER (WHERE e.state = 'cancelled') AS cancelled_at,
       max(e.recorded_at) FILTER (WHERE e.state = 'failed') AS failed_at,
       count(*) FILTER (WHERE e.state = 'waiting') AS poll_attempts,
       count(*) FILTER (WHERE e.state = 'committed') AS commits,
       arg_max(e.deadline, e.seq) FILTER (WHERE e.deadline IS NOT NULL) AS deadline,
       arg_max(e.timeout_at, e.seq) FILTER (WHERE e.timeout_at IS NOT NULL) AS timeout_at,
       arg_max(e.source_id, e.seq) FILTER (WHERE e.state = 'checkpointed') AS source_id,
       arg_max(e.payload_text, e.seq) FILTER (WHERE e.state = 'checkpointed') AS payload,
       arg_max(e.error_text, e.seq) FILTER (WHERE e.error_text IS NOT NULL) AS error,
       coalesce(any_value(g.generation), 1) AS generation,
       coalesce(max(e.seq) FILTER (WHERE e.state = 'checkpointed') < any_value(r.revised_at), false)
           AS reused
FROM event_log e
LEFT JOIN generations g ON g.workflow_id = e.workflow_id AND g.step_id = e.step_id
LEFT JOIN revised r ON r.workflow_id = e.workflow_id
WHERE g.since IS NULL OR e.seq > g.since
GROUP BY e.workflow_id, e.step_id;

CREATE OR REPLACE VIEW steps AS
WITH generations AS (
    SELECT workflow_id, step_id, max(seq) AS since, max(generation) AS generation
    FROM step_generations GROUP BY ALL
), revised AS (
    SELECT workflow_id, max(seq) AS revised_at FROM run_definitions GROUP BY ALL
)
SELECT s.workflow_id, s.step_id,
       arg_max(s.name, s.seq) AS name,
       arg_max(s.kind, s.seq) AS kind,
       arg_max(s.state, s.seq) AS state,
       max(s.attempt) AS attempts,
       min(s.recorded_at) FILTER (WHERE s.state = 'running') AS started_at,
       max(s.recorded_at) FILTER (WHERE s.state IN ('succeeded', 'failed', 'cancelled')) AS ended_at,
       arg_max(s.result_text, s.seq) FILTER (WHERE s.state = 'succeeded') AS result,
       arg_max(s.error_text, s.seq) FILTER (WHERE s.error_text IS NOT NULL) AS error,
       arg_max(s.upstream, s.seq) AS upstream,
       coalesce(any_value(g.generation), 1) AS generation,
       coalesce(max(s.seq) FILTER (WHERE s.state = 'succeeded') < any_value(r.revised_at), false)
           AS reused
FROM step_log s
LEFT JOIN generations g ON g.workflow_id = s.workflow_id AND g.step_id = s.step_id
LEFT JOIN revised r ON r.workflow_id = s.workflow_id
WHERE g.since IS NULL OR s.seq > g.since
GROUP BY s.workflow_id, s.step_id;

CREATE VIEW step_history AS
WITH step_rows AS (
    SELECT workflow_id, step_id, 'function' AS kind, state, attempt, recorded_at,
           CASE WHEN state = 'succeeded' THEN result_text END AS result, error_text, seq
    FROM step_log
    UNION ALL
    SELECT workflow_id, step_id, 'event', state, attempt, recorded_at,
           CASE WHEN state = 'checkpointed' THEN payload_text END, error_text, seq
    FROM event_log
), tagged AS (
    SELECT r.*, coalesce(g.generation, 1) AS generation, coalesce(g.reason, 'first run') AS reason,
           g.revision AS revision
    FROM step_rows r ASOF LEFT JOIN step_generations g
      ON r.workflow_id = g.workflow_id AND r.step_id = g.step_id AND r.seq >= g.seq
), current AS (
    SELECT workflow_id, step_id, max(generation) AS generation, arg_max(reason, seq) AS reason
    FROM step_generations GROUP BY ALL
)
SELECT t.workflow_id, t.step_id, t.generation, any_value(t.reason) AS reason,
       any_value(t.kind) AS kind, arg_max(t.state, t.seq) AS state, max(t.attempt) AS attempts,
       min(t.recorded_at) AS started_at, max(t.recorded_at) AS ended_at,
       arg_max(t.result, t.seq) FILTER (WHERE t.result IS NOT NULL) AS result,
       arg_max(t.error_text, t.seq) FILTER (WHERE t.error_text IS NOT NULL) AS error,
       t.generation < coalesce(any_value(c.generation), 1) AS superseded,
       coalesce(any_value(c.reason) = 'removed' AND t.generation < any_value(c.generation), false)
           AS removed
FROM tagged t LEFT JOIN current c USING (workflow_id, step_id)
GROUP BY t.workflow_id, t.step_id, t.generation;
"""


def _create_v1(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_V1)


def _hand_over_in_checkpoints(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_V2)


def _checkpoints_in_a_narrow_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_V3)


def _generations(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_V4)


# MIGRATIONS[n] brings a store from version n-1 to n. Version 0 is an empty file.
MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {
    1: _create_v1,
    2: _hand_over_in_checkpoints,
    3: _checkpoints_in_a_narrow_table,
    4: _generations,
}

USER_VIEWS = ("workflows", "steps", "events", "inbox_events", "step_history")
INTERNAL_VIEWS = ("event_log",)
"""Views evkit's own reads use; not documented for users' SQL."""

# The current definition of every view, in an order that lets each one bind (the others
# read ``event_log``): what a store whose views were dropped (a user's ``DROP VIEW
# workflows``) gets back when it next opens writable. Each body is cut out of the
# migration that last defined the view, so the two cannot drift apart; a migration that
# redefines a view must point its entry here at itself.
CURRENT_VIEWS: dict[str, str] = {
    "event_log": _V3.split("CREATE VIEW event_log AS", 1)[1],
    "workflows": _V4.split("CREATE OR REPLACE VIEW workflows AS", 1)[1].split(
        "CREATE OR REPLACE VIEW events AS", 1
    )[0],
    "events": _V4.split("CREATE OR REPLACE VIEW events AS", 1)[1].split("CREATE OR REPLACE VIEW steps AS", 1)[
        0
    ],
    "steps": _V4.split("CREATE OR REPLACE VIEW steps AS", 1)[1].split("CREATE VIEW step_history AS", 1)[0],
    "inbox_events": _V2.split("CREATE OR REPLACE VIEW inbox_events AS", 1)[1],
    "step_history": _V4.split("CREATE VIEW step_history AS", 1)[1],
}
assert set(CURRENT_VIEWS) == set(USER_VIEWS) | set(INTERNAL_VIEWS)


def missing_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The views of ``CURRENT_VIEWS`` the store does not have, in creation order."""
    present = {
        row[0]
        for row in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'VIEW'"
        ).fetchall()
    }
    return [name for name in CURRENT_VIEWS if name not in present]


def recreate_views(con: duckdb.DuckDBPyConnection) -> None:
    """Create (or replace) every view with its current definition, in one transaction."""
    statements = "".join(
        f"CREATE OR REPLACE VIEW {name} AS {body.strip().rstrip(';')};\n"
        for name, body in CURRENT_VIEWS.items()
    )
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(statements)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
