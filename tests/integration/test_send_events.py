"""workflow.send_events: many events stored in one transaction, each delivered once."""

from __future__ import annotations

import threading

import pytest

import evkit
from evkit import workflow


@workflow.step
def collect(*values: object) -> list[object]:
    return list(values)


def _waits(keys: list[str]) -> workflow.StepNode:
    return collect.step(*[workflow.wait_for_event(workflow.ManualListener, key) for key in keys])


@pytest.mark.slow  # the first Arrow batch of a process pays pyarrow's import of pandas
def test_send_events_delivers_each_event_to_its_wait_in_one_commit(runtime: evkit.Runtime) -> None:
    keys = [f"k{i}" for i in range(50)]
    handle = workflow.run_async(_waits(keys), workflow_id="many")
    queue = runtime.engine().queue
    batches_before = queue.batches_written
    ids = workflow.send_events("many", [(key, {"n": i}) for i, key in enumerate(keys)])
    batches_for_send = queue.batches_written - batches_before
    assert handle.result(timeout=30) == [{"n": i} for i in range(50)]
    assert len(ids) == len(set(ids)) == 50
    # The 50 inbox rows were committed together (and only then did send_events return);
    # a batch of the waits' own rows may have been in flight meanwhile.
    assert batches_for_send <= 3
    rows = evkit.sql("SELECT key, event_id, delivered_to FROM inbox_events ORDER BY key").fetchall()
    assert {row[1] for row in rows} == set(ids)
    assert all(row[2] is not None for row in rows)


def test_send_events_before_the_waits_start_are_kept_and_delivered_once(runtime: evkit.Runtime) -> None:
    # The run's first wait loads what the inbox holds; two events on one key go to two
    # waits on that key, oldest first.
    handle = workflow.run_async(
        collect.step(workflow.wait_for_event(workflow.ManualListener, "gate")), workflow_id="early"
    )
    workflow.send_events("early", [("gate", "first"), ("gate", "second")])
    assert handle.result(timeout=30) == ["first"]
    rows = evkit.sql("SELECT payload, delivered_to FROM inbox_events ORDER BY sent_at, payload").fetchall()
    assert sorted(rows, key=lambda r: r[0]) == [('"first"', "ManualListener"), ('"second"', None)]


def test_send_events_rejects_bad_items_and_unknown_runs_storing_nothing(runtime: evkit.Runtime) -> None:
    handle = workflow.run_async(_waits(["a"]), workflow_id="strict")
    with pytest.raises(
        TypeError, match=r"^send_events\('strict', \.\.\.\): item 1 must be a \(key, payload\)"
    ):
        workflow.send_events("strict", [("a", 1), "oops"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"^send_events\('strict', \.\.\.\): a payload cannot be stored"):
        workflow.send_events("strict", [("a", 1), ("a", threading.Lock())])
    with pytest.raises(workflow.WorkflowNotFoundError):
        workflow.send_events("ghost", [("a", 1)])
    assert evkit.sql("SELECT count(*) FROM inbox").fetchall() == [(0,)]
    assert workflow.send_events("strict", []) == []
    workflow.send_events("strict", [("a", "ok")])
    assert handle.result(timeout=30) == ["ok"]
