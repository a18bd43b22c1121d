"""An event sent to a step that waits for it is stored once, by the step's checkpoint
(schema version 2); otherwise the inbox keeps it, as before. Either way it is durable
before the send returns, shows once in ``inbox_events`` and is delivered once."""

from __future__ import annotations

import asyncio

import pytest

import evkit
from evkit import workflow
from evkit.engine import Engine


@workflow.step
def collect(*values: object) -> list[object]:
    return list(values)


class WrappingListener(workflow.ManualListener):
    """Checkpoints something other than the sent payload: the event cannot be handed over."""

    async def poll_for_event(self, key: str) -> object:  # type: ignore[override]
        return {"wrapped": await super().poll_for_event(key)}


async def committed(sql: str) -> list[tuple[object, ...]]:
    """Rows of ``sql`` as another thread sees them: committed data only."""
    return await asyncio.to_thread(lambda: evkit.sql(sql).fetchall())


async def waiting_run(
    engine: Engine, workflow_id: str, listener: type[workflow.ManualListener] = workflow.ManualListener
) -> workflow.RunHandle:
    """A run whose one step waits on key ``k``, once it waits and its inbox index is read."""
    handle = workflow.run_async(collect.step(workflow.wait_for_event(listener, "k")), workflow_id=workflow_id)
    await handle.wait_waiting(timeout_seconds=10)
    loading = engine.inbox._loading.get(workflow_id)
    if loading is not None:
        await loading
    return handle


async def test_an_event_sent_to_a_waiting_step_is_stored_by_its_checkpoint_alone(
    aruntime: evkit.Runtime,
) -> None:
    engine = aruntime.engine()
    handle = await waiting_run(engine, "h")
    sent = await engine.inbox.send("h", "k", {"n": 1}, event_id="e1")
    assert not sent.duplicate
    # Durable when send returns: one checkpoint row that also records the send.
    assert await committed(
        "SELECT source_id, inbox_key, inbox_source, inbox_sent_at IS NOT NULL FROM event_log "
        "WHERE state = 'checkpointed'"
    ) == [("e1", "k", "notebook", True)]
    assert await committed("SELECT count(*) FROM inbox") == [(0,)]
    assert await handle == [{"n": 1}]
    assert await committed("SELECT key, event_id, payload, source, delivered_to FROM inbox_events") == [
        ("k", "e1", '{"n": 1}', "notebook", "ManualListener")
    ]
    # The checkpoint answers for the event id: a repeat is known, another key refused.
    assert (await engine.inbox.send("h", "k", "again", event_id="e1")).duplicate
    with pytest.raises(ValueError, match=r"Event id 'e1' was already sent to run 'h' under key 'k'"):
        await engine.inbox.send("h", "other", "again", event_id="e1")
    assert await committed("SELECT count(*) FROM inbox_events") == [(1,)]


async def test_an_event_the_listener_changes_is_kept_by_the_inbox_too(aruntime: evkit.Runtime) -> None:
    engine = aruntime.engine()
    handle = await waiting_run(engine, "w", WrappingListener)
    await engine.inbox.send("w", "k", 7, event_id="e7")
    assert await committed("SELECT event_id, payload_text FROM inbox") == [("e7", "7")]
    assert await handle == [{"wrapped": 7}]
    assert await committed("SELECT count(*) FROM event_log WHERE inbox_key IS NOT NULL") == [(0,)]
    assert await committed("SELECT event_id, payload, delivered_to FROM inbox_events") == [
        ("e7", "7", "WrappingListener")
    ]


async def test_of_two_events_sent_together_to_one_wait_the_second_stays_in_the_inbox(
    aruntime: evkit.Runtime,
) -> None:
    engine = aruntime.engine()
    handle = await waiting_run(engine, "two")
    await asyncio.gather(
        engine.inbox.send("two", "k", "first", event_id="a"),
        engine.inbox.send("two", "k", "second", event_id="b"),
    )
    assert await handle == ["first"]
    assert await committed("SELECT event_id FROM inbox") == [("b",)]
    assert await committed("SELECT event_id, delivered_to FROM inbox_events ORDER BY event_id") == [
        ("a", "ManualListener"),
        ("b", None),
    ]


async def test_a_store_that_fails_before_the_checkpoint_fails_the_send_too(aruntime: evkit.Runtime) -> None:
    engine = aruntime.engine()
    handle = await waiting_run(engine, "broken")
    with pytest.raises(evkit.StoreError, match="failed"):
        await engine.queue.execute("INSERT INTO no_such_table VALUES (1)")
    # The wait takes the event, its checkpoint cannot be queued: the send hears of it.
    with pytest.raises(evkit.StoreError, match="failed earlier and accepts no more writes"):
        await asyncio.wait_for(engine.inbox.send("broken", "k", 1), timeout=10)
    with pytest.raises(evkit.StoreError):
        await handle
