"""workflow.send_events: many events stored in one transaction, each delivered once."""

from __future__ import annotations

import asyncio
import threading

import pytest

import evkit
from evkit import workflow
from evkit.listeners.manual import Inbox


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


async def test_events_sent_while_the_index_loads_wake_each_wait_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Woken at the send, a wait would find the index still loading and wait again; the
    # load wakes every key that has events when it ends.
    loop = asyncio.get_running_loop()
    read_may_finish = asyncio.Event()

    class SlowReadQueue:
        def append(self, record: tuple[object, ...]) -> asyncio.Future[None]:
            durable = loop.create_future()
            durable.set_result(None)
            return durable

        async def read(self, fn: object, *args: object) -> list[tuple[str, str, bytes]]:
            await read_may_finish.wait()
            return []

    waiters_made = 0
    drop_waiter = Inbox._drop_waiter

    def counting_drop(self: Inbox, workflow_id: str, key: str, waiter: asyncio.Future[None]) -> None:
        nonlocal waiters_made
        waiters_made += 1  # called once for every waiter a take made
        drop_waiter(self, workflow_id, key, waiter)

    monkeypatch.setattr(Inbox, "_drop_waiter", counting_drop)
    inbox = Inbox(SlowReadQueue())  # type: ignore[arg-type]
    inbox.prime("run")
    takes = [asyncio.create_task(inbox.take("run", f"k{i}")) for i in range(3)]
    await asyncio.sleep(0)

    await inbox.send_many("run", [(f"k{i}", i) for i in range(3)])
    await asyncio.sleep(0)
    assert not any(take.done() for take in takes)  # the index is still loading

    read_may_finish.set()
    assert [payload for _, payload in await asyncio.gather(*takes)] == [0, 1, 2]
    assert waiters_made == 3


def test_the_engine_reads_a_runs_inbox_before_its_waits_start(
    runtime: evkit.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Started by the first wait, the read would queue behind the batch of every wait's
    # own row (for 100,000 waits ~1.3 s), and sends made meanwhile would wait for it.
    calls: list[tuple[str, str]] = []
    prime, take = Inbox.prime, Inbox.take

    def recording_prime(self: Inbox, workflow_id: str) -> None:
        calls.append(("prime", workflow_id))
        prime(self, workflow_id)

    async def recording_take(self: Inbox, workflow_id: str, key: str) -> tuple[str, object]:
        calls.append(("take", workflow_id))
        return await take(self, workflow_id, key)

    monkeypatch.setattr(Inbox, "prime", recording_prime)
    monkeypatch.setattr(Inbox, "take", recording_take)
    handle = workflow.run_async(_waits(["a", "b"]), workflow_id="primed")
    workflow.send_events("primed", [("a", 1), ("b", 2)])
    assert handle.result(timeout=30) == [1, 2]
    timer_only = collect.step(workflow.wait_for_event(workflow.TimerListener, 0.0))
    assert len(workflow.run(timer_only, workflow_id="no-inbox")) == 1

    assert calls == [("prime", "primed"), ("take", "primed"), ("take", "primed")]
