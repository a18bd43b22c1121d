"""CronListener through real runs on a fake clock: the stored fire time, recurring loops with
catch_up, daylight saving time, and a restart that keeps the stored deadline."""

from __future__ import annotations

import asyncio
import datetime as dt
from zoneinfo import ZoneInfo

import croniter  # noqa: F401 - evkit imports it on first use, on the loop: blockbuster would see that
import pytest

import evkit
from evkit import workflow

BERLIN = ZoneInfo("Europe/Berlin")
ZoneInfo("UTC")  # loaded once (a file read), as a first schedule in a process does on the loop
FRIDAY_EVENING = dt.datetime(2026, 1, 2, 18, 0, tzinfo=BERLIN)


@pytest.fixture
def fake_clock() -> evkit.FakeClock:
    """A fake clock that starts on a known Friday evening in Berlin, so fire times are dates
    a reader can check (the shared one starts at an arbitrary epoch second)."""
    return evkit.FakeClock(start=FRIDAY_EVENING.timestamp())


def berlin(*fields: int) -> dt.datetime:
    return dt.datetime(*fields, tzinfo=BERLIN)  # type: ignore[misc]


def cron(expression: str, **options: object) -> evkit.StepNode:
    return workflow.wait_for_event(workflow.CronListener, expression, tz="Europe/Berlin", **options)


@workflow.step
def collect_fires(
    fired: dt.datetime, fires: list[dt.datetime], left: int, expression: str, catch_up: str
) -> object:
    """A recurring job: each fire is the next wait's `after`."""
    fires = [*fires, fired]
    if left == 1:
        return fires
    return collect_fires.step(
        cron(expression, after=fired, catch_up=catch_up), fires, left - 1, expression, catch_up
    )


def recurring(expression: str, times: int, *, catch_up: str = "latest", **first: object) -> evkit.StepNode:
    return collect_fires.step(cron(expression, catch_up=catch_up, **first), [], times, expression, catch_up)


async def move_to(clock: evkit.FakeClock, when: dt.datetime) -> None:
    """Wait until the run sleeps, then move the clock to ``when``."""
    await clock.wait_for_sleepers_async(1)
    clock.advance(when.timestamp() - clock.now())


async def rows(query: str) -> list[tuple[object, ...]]:
    return await asyncio.to_thread(lambda: evkit.sql(query).fetchall())


async def test_a_schedule_fires_at_the_next_matching_time_and_returns_it(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    handle = workflow.run_async(cron("0 7 * * 1-5"), workflow_id="weekday")
    await move_to(fake_clock, berlin(2026, 1, 5, 6, 59, 59))
    assert not handle.done()
    await move_to(fake_clock, berlin(2026, 1, 5, 7, 0))
    fired = await handle
    assert fired == berlin(2026, 1, 5, 7, 0)
    assert fired.tzinfo == BERLIN
    assert await rows("SELECT epoch(deadline), payload IS NOT NULL, state FROM events") == [
        (berlin(2026, 1, 5, 7, 0).timestamp(), True, "committed")
    ]


async def test_catch_up_all_delivers_each_missed_fire_at_once_then_waits(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    # The previous fire was on Tuesday; it is Friday evening: Wednesday to Friday were missed.
    handle = workflow.run_async(
        recurring("0 7 * * 1-5", 4, catch_up="all", after=berlin(2025, 12, 30, 7, 0)), workflow_id="all"
    )
    await move_to(fake_clock, berlin(2026, 1, 5, 7, 0))  # the fourth waits for Monday
    assert await handle == [
        berlin(2025, 12, 31, 7, 0),
        berlin(2026, 1, 1, 7, 0),
        berlin(2026, 1, 2, 7, 0),
        berlin(2026, 1, 5, 7, 0),
    ]


async def test_catch_up_latest_delivers_only_the_newest_missed_fire(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    handle = workflow.run_async(
        recurring("0 7 * * 1-5", 2, after=berlin(2025, 12, 30, 7, 0)), workflow_id="l"
    )
    await move_to(fake_clock, berlin(2026, 1, 5, 7, 0))
    assert await handle == [berlin(2026, 1, 2, 7, 0), berlin(2026, 1, 5, 7, 0)]


async def test_catch_up_skip_waits_for_the_next_future_fire(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    handle = workflow.run_async(
        recurring("0 7 * * 1-5", 1, catch_up="skip", after=berlin(2025, 12, 30, 7, 0)), workflow_id="s"
    )
    await move_to(fake_clock, berlin(2026, 1, 5, 7, 0))
    assert await handle == [berlin(2026, 1, 5, 7, 0)]


async def test_on_the_spring_forward_day_a_missing_0230_fires_at_0300(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    fake_clock.advance(berlin(2026, 3, 28, 12, 0).timestamp() - fake_clock.now())
    handle = workflow.run_async(recurring("30 2 * * *", 2), workflow_id="spring")
    await move_to(fake_clock, berlin(2026, 3, 29, 3, 0))
    await move_to(fake_clock, berlin(2026, 3, 30, 2, 30))
    first, second = await handle
    assert first == berlin(2026, 3, 29, 3, 0)
    assert first.astimezone(dt.UTC) == dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC)
    assert second == berlin(2026, 3, 30, 2, 30)


async def test_on_the_fall_back_day_0230_fires_twice_an_hour_apart(
    aruntime: evkit.Runtime, fake_clock: evkit.FakeClock
) -> None:
    fake_clock.advance(berlin(2026, 10, 24, 12, 0).timestamp() - fake_clock.now())
    handle = workflow.run_async(recurring("30 2 * * *", 3), workflow_id="fall")
    summer = dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC)
    await move_to(fake_clock, summer.astimezone(BERLIN))
    await move_to(fake_clock, (summer + dt.timedelta(hours=1)).astimezone(BERLIN))
    await move_to(fake_clock, berlin(2026, 10, 26, 2, 30))
    fires = await handle
    assert [(f.hour, f.minute, f.utcoffset()) for f in fires] == [
        (2, 30, dt.timedelta(hours=2)),
        (2, 30, dt.timedelta(hours=1)),
        (2, 30, dt.timedelta(hours=1)),
    ]
    assert [f.astimezone(dt.UTC) for f in fires[:2]] == [summer, summer + dt.timedelta(hours=1)]


def test_bad_expression_fails_where_the_wait_is_written_naming_the_argument() -> None:
    # Not in the run: a resume would poll with the same stored expression again.
    with pytest.raises(evkit.WorkflowDefinitionError) as failure:
        cron("0 25 * * *")
    assert "CronListener: `expression` '0 25 * * *' is not a cron expression" in str(failure.value)


@pytest.mark.slow
async def test_after_a_restart_the_wait_fires_at_its_stored_deadline(
    store_path: str, fake_clock: evkit.FakeClock
) -> None:
    runtime = await asyncio.to_thread(workflow.init, storage=store_path, clock=fake_clock)
    try:
        workflow.run_async(cron("0 7 * * 1-5"), workflow_id="restart")
        await fake_clock.wait_for_sleepers_async(1)
    finally:
        await runtime.aclose()
    # Down from Friday evening to Wednesday noon: a deadline computed anew would be
    # Thursday 07:00; the stored one (Monday 07:00) has passed, so the wait ends at once.
    fake_clock.advance(berlin(2026, 1, 7, 12, 0).timestamp() - fake_clock.now())
    runtime = await asyncio.to_thread(workflow.init, storage=store_path, clock=fake_clock)
    try:
        fired = await asyncio.wait_for(workflow.resume_async("restart"), timeout=10)
        assert fired == berlin(2026, 1, 5, 7, 0)
        monday = berlin(2026, 1, 5, 7, 0).timestamp()
        assert await rows(
            "SELECT attempt, epoch(deadline) FROM event_log WHERE state = 'waiting' ORDER BY attempt"
        ) == [(1, monday), (2, monday)]
    finally:
        await runtime.aclose()
