"""Labels of event steps on a real loop and a real store: what a run's snapshot and
progress say of each wait, and the readable ``args`` of the ``events`` view."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

import evkit
from evkit import workflow

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


@workflow.step
def gather(*values: object) -> tuple[object, ...]:
    return values


async def rows(query: str) -> list[tuple[object, ...]]:
    """Run SQL from a worker thread, as async code should (evkit.sql blocks)."""
    return await asyncio.to_thread(lambda: evkit.sql(query).fetchall())


@pytest.mark.usefixtures("india_local_time")
async def test_waits_are_labelled_by_key_and_deadline_and_timer_args_read_as_local_times(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    start = fake_clock.now()
    handle = workflow.run_async(
        gather.step(
            workflow.wait_for_event(workflow.ManualListener, key="approve-42"),
            workflow.sleep(30),
            workflow.wait_for_event(workflow.TimerListener, start + 90),
        ),
        workflow_id="labels",
    )
    await handle.wait_waiting(timeout_seconds=5)
    await fake_clock.wait_for_sleepers_async(2)

    events = {s.step_id: s for s in handle.snapshot().steps if s.kind == "event"}
    # A timer's label is its deadline, written where it is shown (in the viewer's zone).
    assert {step_id: s.label for step_id, s in events.items()} == {
        "ManualListener": "approve-42",
        "sleep": None,
        "TimerListener": None,
    }
    assert events["sleep"].deadline == dt.datetime.fromtimestamp(start + 30, tz=dt.UTC)
    assert handle.progress().labels == {
        "ManualListener": "approve-42",
        "sleep": dt.datetime.fromtimestamp(start + 30, tz=dt.UTC),
        "TimerListener": dt.datetime.fromtimestamp(start + 90, tz=dt.UTC),
    }

    def local(seconds: float) -> str:
        return dt.datetime.fromtimestamp(start + seconds, tz=IST).isoformat(timespec="milliseconds")

    await aruntime.engine().queue.flush()  # the "waiting" rows are durable
    args = dict(await rows("SELECT step_id, args FROM events WHERE state = 'waiting'"))
    assert args == {
        "ManualListener": '{"args": [], "kwargs": {"key": "approve-42"}}',
        "sleep": json.dumps([local(30)]),
        "TimerListener": json.dumps([local(90)]),
    }
    assert local(30).endswith("+05:30")  # the machine's zone, not UTC
    assert events["sleep"].args_text == args["sleep"]  # the views show the same text

    await handle.cancel_async()


async def test_a_name_given_to_a_wait_or_a_sleep_wins_over_what_the_listener_says(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    handle = workflow.run_async(
        gather.step(
            workflow.wait_for_event(workflow.ManualListener, key="k2", name="approval"),
            workflow.sleep(60, name="cool-down"),
        ),
        workflow_id="named",
    )
    await handle.wait_waiting(timeout_seconds=5)

    events = {s.step_id: s.label for s in handle.snapshot().steps if s.kind == "event"}
    assert events == {"approval": "approval", "cool-down": "cool-down"}
    assert handle.progress().labels == events
    await aruntime.engine().inbox.send("named", "k2", "yes")
    await fake_clock.wait_for_sleepers_async(1)
    fake_clock.advance(60)
    assert await handle == ("yes", None)
    assert await rows("SELECT step_id, state FROM events ORDER BY step_id") == [
        ("approval", "committed"),
        ("cool-down", "committed"),
    ]
