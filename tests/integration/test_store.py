"""The store file: creation, refusal of foreign or newer files, the process lock, group
commit, and that all DuckDB work happens on the store's own thread."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import threading

import duckdb
import pytest

import evkit
from evkit import workflow
from evkit.store import SCHEMA_VERSION, USER_VIEWS, StoreWriter, WriteQueue, now, rows, schema, writer
from evkit.store.rows import EventCheckpointRecord, EventStateRecord, InboxRecord


def test_a_new_store_has_the_schema_version_and_the_user_views(store_path: str) -> None:
    with StoreWriter(store_path) as w:
        meta = dict(w.call(lambda con: con.execute("SELECT key, value FROM evkit_meta").fetchall()))
        views = {
            r[0] for r in w.call(lambda con: con.execute("SELECT view_name FROM duckdb_views()").fetchall())
        }
    assert meta == {"format": "evkit-store", "schema_version": str(SCHEMA_VERSION)}
    assert set(USER_VIEWS) <= views


def test_a_file_that_is_not_duckdb_is_refused_and_left_untouched(store_path: str) -> None:
    content = b"name,value\nnot,a database\n" * 100
    with open(store_path, "wb") as f:
        f.write(content)
    with pytest.raises(evkit.NotAStoreError, match=r"is not a DuckDB file evkit can open .* left untouched"):
        StoreWriter(store_path)
    with open(store_path, "rb") as f:
        assert f.read() == content


def test_another_duckdb_database_is_refused_and_left_untouched(store_path: str) -> None:
    con = duckdb.connect(store_path)
    con.execute("CREATE TABLE sales (amount INTEGER)")
    con.close()
    with pytest.raises(
        evkit.NotAStoreError, match=r"is a DuckDB file but not an evkit store \(it has tables sales\)"
    ):
        StoreWriter(store_path)
    con = duckdb.connect(store_path)
    assert con.execute("SELECT table_name FROM information_schema.tables").fetchall() == [("sales",)]
    con.close()


def test_a_version_1_store_is_migrated_and_keeps_its_sent_events(store_path: str) -> None:
    # A store as evkit 0.1.0 left it: one sent event, taken by a step's checkpoint.
    con = duckdb.connect(store_path)
    con.execute("CREATE TABLE evkit_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    con.execute("INSERT INTO evkit_meta VALUES ('format', 'evkit-store'), ('schema_version', '1')")
    schema.MIGRATIONS[1](con)
    con.execute(
        "INSERT INTO inbox (workflow_id, key, event_id, sent_at, payload_blob, payload_text, source) "
        "VALUES ('run', 'k', 'e1', now(), 'x'::BLOB, '1', 'notebook')"
    )
    con.execute(
        "INSERT INTO event_log (workflow_id, step_id, event_id, state, attempt, recorded_at, source_id) "
        "VALUES ('run', 'wait', 'run/wait', 'checkpointed', 1, now(), 'e1')"
    )
    con.close()
    with StoreWriter(store_path) as w:

        def query(sql: str) -> list[tuple[object, ...]]:
            return w.call(lambda con: con.execute(sql).fetchall())

        version = query("SELECT value FROM evkit_meta WHERE key = 'schema_version'")
        sent = query("SELECT key, event_id, payload, delivered_to FROM inbox_events")
        columns = w.call(
            lambda con: [d[0] for d in con.execute("SELECT * FROM event_log LIMIT 0").description]
        )
    assert version == [(str(SCHEMA_VERSION),)]
    assert sent == [("k", "e1", "1", "wait")]
    assert {"inbox_key", "inbox_sent_at", "inbox_source"} <= set(columns)


def test_a_version_2_store_is_migrated_and_its_event_log_reads_the_same(store_path: str) -> None:
    # Version 3 moved checkpoint rows to a table of their own; `event_log`, now a view of
    # both tables, and the views built on it must show the same rows as before.
    con = duckdb.connect(store_path)
    con.execute("CREATE TABLE evkit_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    con.execute("INSERT INTO evkit_meta VALUES ('format', 'evkit-store'), ('schema_version', '2')")
    schema.MIGRATIONS[1](con)
    schema.MIGRATIONS[2](con)
    con.execute(
        "INSERT INTO inbox (workflow_id, key, event_id, sent_at, payload_blob, payload_text, source) "
        "VALUES ('run', 'a', 'e1', TIMESTAMPTZ '2026-01-01 00:00:01+00', 'x'::BLOB, '1', 'notebook')"
    )
    columns = "workflow_id, step_id, event_id, state, attempt, recorded_at"
    con.execute(
        f"""
        INSERT INTO event_log ({columns}, listener, args_text, deadline, timeout_at) VALUES
          ('run', 'wait_a', 'run/wait_a', 'waiting', 1, TIMESTAMPTZ '2026-01-01 00:00:00+00',
           'ManualListener', '["a"]', NULL, TIMESTAMPTZ '2026-01-01 01:00:00+00'),
          ('run', 'wait_b', 'run/wait_b', 'waiting', 1, TIMESTAMPTZ '2026-01-01 00:00:00+00',
           'ManualListener', '["b"]', NULL, NULL),
          ('run', 'timer', 'run/timer', 'waiting', 1, TIMESTAMPTZ '2026-01-01 00:00:00+00',
           'TimerListener', '[1.5]', TIMESTAMPTZ '2026-01-01 00:00:02+00', NULL);
        INSERT INTO event_log ({columns}, received_at, source_id, payload_blob, payload_text) VALUES
          ('run', 'wait_a', 'run/wait_a', 'checkpointed', 1, TIMESTAMPTZ '2026-01-01 00:00:02+00',
           TIMESTAMPTZ '2026-01-01 00:00:02+00', 'e1', 'x'::BLOB, '1');
        INSERT INTO event_log ({columns}, received_at, source_id, payload_blob, payload_text,
                               inbox_key, inbox_sent_at, inbox_source) VALUES
          ('run', 'wait_b', 'run/wait_b', 'checkpointed', 1, TIMESTAMPTZ '2026-01-01 00:00:03+00',
           TIMESTAMPTZ '2026-01-01 00:00:03+00', 'e2', 'y'::BLOB, '2', 'b',
           TIMESTAMPTZ '2026-01-01 00:00:03+00', 'http');
        INSERT INTO event_log ({columns}) VALUES
          ('run', 'wait_a', 'run/wait_a', 'committed', 1, TIMESTAMPTZ '2026-01-01 00:00:04+00');
        INSERT INTO event_log ({columns}, error_text) VALUES
          ('run', 'timer', 'run/timer', 'failed', 1, TIMESTAMPTZ '2026-01-01 00:00:05+00', 'boom');
        """
    )

    def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[object, ...]]]:
        return {
            "event_log": con.execute("SELECT * FROM event_log ORDER BY seq").fetchall(),
            "events": con.execute("SELECT * FROM events ORDER BY step_id").fetchall(),
            "inbox_events": con.execute("SELECT * FROM inbox_events ORDER BY event_id").fetchall(),
        }

    before = snapshot(con)
    con.close()
    with StoreWriter(store_path) as w:
        after = w.call(snapshot)
        checkpoints = w.call(lambda con: con.execute("SELECT count(*) FROM event_checkpoint_log").fetchone())
    # Version 4 added `generation` and `reused` at the end of `events`.
    assert [row[-2:] for row in after["events"]] == [(1, False)] * 3
    after["events"] = [row[:-2] for row in after["events"]]
    assert after == before
    assert len(before["event_log"]) == 7
    assert checkpoints == (2,)


def test_a_store_from_a_newer_evkit_is_refused(store_path: str) -> None:
    StoreWriter(store_path).close()
    con = duckdb.connect(store_path)
    con.execute("UPDATE evkit_meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(
        evkit.StoreVersionError,
        match=rf"has schema version 99, but this evkit knows versions up to {SCHEMA_VERSION}",
    ):
        StoreWriter(store_path)


@pytest.mark.slow
def test_a_second_process_gets_a_clear_error_naming_the_file(store_path: str) -> None:
    with StoreWriter(store_path):
        child = subprocess.run(
            [sys.executable, "-c", "import sys, evkit; evkit.init(storage=sys.argv[1])", store_path],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert child.returncode == 1
    last_line = child.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"evkit.errors.StoreLockedError: Store '{store_path}' is open in process ")
    assert "Query it from that process with evkit.sql(...)" in last_line


async def test_rows_queued_together_are_written_in_one_transaction(store_path: str) -> None:
    w = await asyncio.to_thread(StoreWriter, store_path)  # opening a file is blocking I/O
    queue = WriteQueue(w, asyncio.get_running_loop())
    futures = [queue.append(InboxRecord("wf", "k", f"e{i}", now(), b"x", str(i), "test")) for i in range(500)]
    await asyncio.gather(*futures)
    assert queue.batches_written == 1
    await queue.aclose()
    count = await asyncio.to_thread(w.call, lambda con: con.execute("SELECT count(*) FROM inbox").fetchall())
    assert count == [(500,)]
    await asyncio.to_thread(w.close)


@pytest.mark.parametrize("rows", [1, 50], ids=["values-insert", "arrow-append"])
async def test_rows_carry_epoch_seconds_and_the_store_keeps_utc_times(store_path: str, rows: int) -> None:
    # Both ways a batch is written (a VALUES insert below 8 rows, Arrow above) turn the
    # rows' float seconds into the same TIMESTAMPTZ, to the microsecond; datetimes pass too.
    w = await asyncio.to_thread(StoreWriter, store_path)
    queue = WriteQueue(w, asyncio.get_running_loop())
    sent = 1_795_000_000.123456
    as_datetime = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    for i in range(rows):
        queue.append(InboxRecord("wf", "k", f"e{i}", sent, b"x", "x", "test"))
    await queue.append(InboxRecord("wf", "k", "dt", as_datetime, b"x", "x", "test"))  # type: ignore[arg-type]
    await queue.aclose()
    stored = await asyncio.to_thread(
        w.call, lambda con: dict(con.execute("SELECT event_id, sent_at FROM inbox").fetchall())
    )
    assert stored["e0"] == dt.datetime.fromtimestamp(sent, tz=dt.UTC)
    assert stored["e0"].microsecond == 123456
    assert stored["dt"] == as_datetime
    await asyncio.to_thread(w.close)


async def test_a_waiting_row_and_its_checkpoint_in_one_batch_keep_their_order(store_path: str) -> None:
    # They go to two tables, and `seq` follows the tables' INSERTs. A checkpoint queued
    # first (step b's) must not put step a's checkpoint before a's own waiting row.
    w = await asyncio.to_thread(StoreWriter, store_path)
    queue = WriteQueue(w, asyncio.get_running_loop())

    def checkpoint(step: str) -> EventCheckpointRecord:
        return EventCheckpointRecord("wf", step, 1, now(), now(), f"src-{step}", b"x", "x")

    def waiting(step: str) -> EventStateRecord:
        return EventStateRecord(
            "wf", step, f"wf/{step}", "waiting", 1, now(), "ManualListener", None, None, None, None
        )

    queue.append(waiting("b"))
    await queue.flush()
    queue.append(checkpoint("b"))
    queue.append(waiting("a"))
    await queue.append(checkpoint("a"))
    await queue.aclose()
    assert queue.batches_written == 2
    states = await asyncio.to_thread(
        w.call, lambda con: con.execute("SELECT step_id, state FROM events ORDER BY step_id").fetchall()
    )
    assert states == [("a", "checkpointed"), ("b", "checkpointed")]
    await asyncio.to_thread(w.close)


async def test_a_failed_batch_fails_its_waiters_and_refuses_further_writes(store_path: str) -> None:
    w = await asyncio.to_thread(StoreWriter, store_path)
    queue = WriteQueue(w, asyncio.get_running_loop())
    with pytest.raises(evkit.StoreError, match="failed"):
        await queue.execute("INSERT INTO no_such_table VALUES (1)")
    with pytest.raises(evkit.StoreError, match="failed earlier and accepts no more writes"):
        queue.append(InboxRecord("wf", "k", "e", now(), b"x", "x", "test"))
    await asyncio.to_thread(w.close)


def test_every_store_write_of_a_run_happens_on_the_store_thread(
    runtime: evkit.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[str] = set()
    real_apply = writer.apply_batch

    def recording_apply(con: duckdb.DuckDBPyConnection, ops: list[writer.Op]) -> None:
        threads.add(threading.current_thread().name)
        real_apply(con, ops)

    monkeypatch.setattr(writer, "apply_batch", recording_apply)
    node = workflow.wait_for_event(workflow.ManualListener, key="k")
    handle = workflow.run_async(node, workflow_id="w")
    workflow.send_event("w", "k", "v")
    assert handle.result(timeout=10) == "v"
    assert threads
    assert all(name.startswith("evkit-store") for name in threads)


def test_the_arrow_column_types_are_complete_for_every_writer_thread() -> None:
    # Two runtimes in one process convert their first big batches at the same moment;
    # neither may see the column types half-built (a blob column would become a string).
    rows._arrow_types.cache_clear()
    barrier = threading.Barrier(8)
    seen: list[dict[str, object]] = []

    def first_batch() -> None:
        barrier.wait()
        seen.append(rows._arrow()[1])

    threads = [threading.Thread(target=first_batch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8
    assert all(len(types) == len(seen[0]) and types["dag_blob"] == seen[0]["dag_blob"] for types in seen)
    assert str(seen[0]["dag_blob"]) == "binary"
