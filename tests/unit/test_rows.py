"""The store's records: each matches its table, and a batch inserts them in a safe order."""

from __future__ import annotations

import os

import duckdb
import pytest

from evkit.store import rows, schema
from evkit.store.rows import (
    EventCheckpointRecord,
    EventCommitRecord,
    EventStateRecord,
    InboxRecord,
    RunStatusRecord,
    StepRecord,
    insert_order,
)


@pytest.fixture(scope="module")
def table_columns() -> dict[str, list[str]]:
    """Each table's columns in a store made by the current migrations (in memory: no disk)."""
    con = duckdb.connect(":memory:")
    for version in sorted(schema.MIGRATIONS):
        schema.MIGRATIONS[version](con)
    found: dict[str, list[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns ORDER BY table_name, ordinal_position"
    ).fetchall():
        found.setdefault(table, []).append(column)
    con.close()
    return found


@pytest.mark.parametrize("kind", list(rows.TABLES), ids=lambda kind: kind.__name__)
def test_every_record_field_is_a_column_of_its_table(
    kind: type[rows.Record], table_columns: dict[str, list[str]]
) -> None:
    columns = table_columns[rows.TABLES[kind]]
    assert set(kind._fields) <= set(columns), set(kind._fields) - set(columns)


@pytest.mark.parametrize(
    "kind", [k for k in rows.TABLES if k is not EventCommitRecord], ids=lambda kind: kind.__name__
)
def test_a_full_record_fills_every_column_of_its_table_but_seq(
    kind: type[rows.Record], table_columns: dict[str, list[str]]
) -> None:
    assert list(kind._fields) == [c for c in table_columns[rows.TABLES[kind]] if c != "seq"]


def test_the_commit_record_is_the_head_of_the_event_state_record() -> None:
    assert rows.TABLES[EventCommitRecord] == rows.TABLES[EventStateRecord]
    assert EventStateRecord._fields[: len(EventCommitRecord._fields)] == EventCommitRecord._fields


def test_a_batch_inserts_an_events_waiting_row_before_its_checkpoint() -> None:
    # An event sent before its step waits puts both rows in one batch; the views take the
    # row with the highest `seq`, which follows the INSERT statements.
    order = insert_order(
        [InboxRecord, EventCheckpointRecord, EventCommitRecord, EventStateRecord, StepRecord]
    )
    assert order.index(EventStateRecord) < order.index(EventCheckpointRecord)
    assert order == [StepRecord, EventStateRecord, EventCheckpointRecord, InboxRecord, EventCommitRecord]


def test_run_status_records_this_process_and_the_output() -> None:
    record = rows.run_status("w", "SUCCESSFUL", output=(b"blob", "text"))
    assert isinstance(record, RunStatusRecord)
    assert (record.workflow_id, record.status, record.output_blob, record.output_text) == (
        "w",
        "SUCCESSFUL",
        b"blob",
        "text",
    )
    assert (record.error_blob, record.error_text) == (None, None)
    assert record.owner_pid == os.getpid()


def test_a_record_has_a_fixed_width() -> None:
    with pytest.raises(TypeError):
        EventCommitRecord("w", "s", "w/s", "committed", 1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        EventCommitRecord("w", "s", "w/s", "committed", 1, 0.0, "extra")  # type: ignore[call-arg]


def test_few_records_go_in_by_values_and_many_by_arrow() -> None:
    one = [InboxRecord("w", "k", "e", 0.0, b"x", "x", "test")]
    assert rows.by_values(one)
    assert not rows.by_values(one * 100)


def test_records_round_trip_through_values_and_arrow_inserts(table_columns: dict[str, list[str]]) -> None:
    con = duckdb.connect(":memory:")
    for version in sorted(schema.MIGRATIONS):
        schema.MIGRATIONS[version](con)
    few = [InboxRecord("w", "k", f"e{i}", 1_700_000_000.5, b"x", "x", "test") for i in range(2)]
    many = [InboxRecord("w", "k", f"m{i}", 1_700_000_000.25, b"y", "y", "test") for i in range(50)]
    rows.insert_records(con, InboxRecord, list(few))
    rows.insert_records(con, InboxRecord, list(many))
    count, epochs = con.execute(
        "SELECT count(*), list(DISTINCT epoch(sent_at) ORDER BY epoch(sent_at)) FROM inbox"
    ).fetchone()  # type: ignore[misc]
    assert count == 52
    assert epochs == [1_700_000_000.25, 1_700_000_000.5]
    con.close()
