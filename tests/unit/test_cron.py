"""The pure schedule computation: the next fire, the catch_up rules and daylight saving time."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from evkit.dag import step, wait_for_event
from evkit.errors import WorkflowDefinitionError
from evkit.listeners.base import NOTHING_TO_DESCRIBE, WaitDescription
from evkit.listeners.cron import CronListener, next_fire

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_AT_7 = "0 7 * * 1-5"


def at(*fields: int, tz: dt.tzinfo = BERLIN, fold: int = 0) -> dt.datetime:
    return dt.datetime(*fields, tzinfo=tz, fold=fold)  # type: ignore[misc]


def fire(expression: str, now: dt.datetime, **options: object) -> dt.datetime:
    return next_fire(expression, tz="Europe/Berlin", now=now.timestamp(), **options)  # type: ignore[arg-type]


def test_next_fire_is_the_next_matching_time_in_the_time_zone() -> None:
    friday_evening = at(2026, 1, 2, 18, 0)
    result = fire(WEEKDAYS_AT_7, friday_evening)
    assert result == at(2026, 1, 5, 7, 0)  # Monday
    assert result.tzinfo == BERLIN
    assert result.utcoffset() == dt.timedelta(hours=1)


def test_a_fire_exactly_now_is_not_the_next_one() -> None:
    assert fire(WEEKDAYS_AT_7, at(2026, 1, 5, 7, 0)) == at(2026, 1, 6, 7, 0)


def test_the_default_time_zone_is_utc() -> None:
    now = dt.datetime(2026, 1, 5, 6, 0, tzinfo=dt.UTC).timestamp()
    result = next_fire(WEEKDAYS_AT_7, now=now)
    assert result == dt.datetime(2026, 1, 5, 7, 0, tzinfo=dt.UTC)
    assert result.utcoffset() == dt.timedelta(0)


def test_with_nothing_missed_every_catch_up_rule_gives_the_next_fire() -> None:
    previous = at(2026, 1, 5, 7, 0)
    now = at(2026, 1, 5, 7, 0, 1)
    for rule in ("latest", "all", "skip"):
        assert fire(WEEKDAYS_AT_7, now, after=previous, catch_up=rule) == at(2026, 1, 6, 7, 0)


def test_catch_up_latest_gives_the_newest_missed_fire() -> None:
    previous = at(2026, 1, 5, 7, 0)  # Monday; Tuesday to Thursday were missed
    assert fire(WEEKDAYS_AT_7, at(2026, 1, 8, 12, 0), after=previous) == at(2026, 1, 8, 7, 0)


def test_catch_up_latest_counts_a_fire_exactly_now_as_missed() -> None:
    previous = at(2026, 1, 5, 7, 0)
    assert fire(WEEKDAYS_AT_7, at(2026, 1, 8, 7, 0), after=previous) == at(2026, 1, 8, 7, 0)


def test_catch_up_all_gives_each_missed_fire_in_turn() -> None:
    now = at(2026, 1, 8, 12, 0)
    fires = [at(2026, 1, 5, 7, 0)]
    for _ in range(4):
        fires.append(fire(WEEKDAYS_AT_7, now, after=fires[-1], catch_up="all"))
    assert fires[1:] == [
        at(2026, 1, 6, 7, 0),
        at(2026, 1, 7, 7, 0),
        at(2026, 1, 8, 7, 0),
        at(2026, 1, 9, 7, 0),  # caught up: the next future one
    ]


def test_catch_up_skip_drops_the_missed_fires() -> None:
    previous = at(2026, 1, 5, 7, 0)
    assert fire(WEEKDAYS_AT_7, at(2026, 1, 8, 12, 0), after=previous, catch_up="skip") == at(2026, 1, 9, 7, 0)


def test_after_in_another_time_zone_is_the_same_instant() -> None:
    previous = at(2026, 1, 5, 7, 0).astimezone(dt.UTC)
    assert fire(WEEKDAYS_AT_7, at(2026, 1, 5, 8, 0), after=previous) == at(2026, 1, 6, 7, 0)


def test_after_later_than_now_never_gives_the_same_fire_twice() -> None:
    previous = at(2026, 1, 5, 7, 0)
    assert fire(WEEKDAYS_AT_7, at(2026, 1, 5, 6, 59), after=previous) == at(2026, 1, 6, 7, 0)


def test_a_time_that_does_not_exist_on_the_spring_forward_day_fires_after_the_gap() -> None:
    # 2026-03-29 in Berlin: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
    result = fire("30 2 * * *", at(2026, 3, 28, 12, 0))
    assert result == at(2026, 3, 29, 3, 0)
    assert result.utcoffset() == dt.timedelta(hours=2)
    assert result.astimezone(dt.UTC) == dt.datetime(2026, 3, 29, 1, 0, tzinfo=dt.UTC)
    assert fire("30 2 * * *", result, after=result) == at(2026, 3, 30, 2, 30)


def test_an_hourly_schedule_skips_the_missing_hour_on_the_spring_forward_day() -> None:
    result = fire("30 * * * *", at(2026, 3, 29, 1, 45))
    assert result == at(2026, 3, 29, 3, 30)
    assert result.timestamp() - at(2026, 3, 29, 1, 30).timestamp() == 3600


def test_a_time_that_occurs_twice_on_the_fall_back_day_fires_twice() -> None:
    # 2026-10-25 in Berlin: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    first = fire("30 2 * * *", at(2026, 10, 24, 12, 0))
    assert (first.hour, first.minute, first.utcoffset()) == (2, 30, dt.timedelta(hours=2))
    second = fire("30 2 * * *", first, after=first)
    assert (second.hour, second.minute, second.utcoffset(), second.fold) == (2, 30, dt.timedelta(hours=1), 1)
    assert second.timestamp() - first.timestamp() == 3600
    third = fire("30 2 * * *", second, after=second)
    assert third == at(2026, 10, 26, 2, 30)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"expression": "61 * * * *"},
            ValueError,
            r"^CronListener: `expression` '61 \* \* \* \*' is not a cron expression\. Expected five fields",
        ),
        (
            {"expression": "0 0 7 * * 1-5"},
            ValueError,
            r"^CronListener: `expression` '0 0 7 \* \* 1-5' is not a cron expression",
        ),
        (
            {"expression": 7},
            TypeError,
            r"^CronListener: `expression` must be a cron expression \(a str\), got 7",
        ),
        (
            {"tz": "Mars/Olympus"},
            ValueError,
            r"^CronListener: `tz` 'Mars/Olympus' is not a time zone known here",
        ),
        (
            {"catch_up": "some"},
            ValueError,
            r"^CronListener: `catch_up` must be one of \('latest', 'all', 'skip'\)",
        ),
        (
            {"after": dt.datetime(2026, 1, 5, 7, 0)},
            TypeError,
            r"^CronListener: `after` must be an aware datetime \(the value of the previous wait\), got",
        ),
    ],
)
def test_bad_arguments_name_the_argument_and_what_is_expected(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    arguments: dict[str, object] = {"expression": WEEKDAYS_AT_7, "tz": "UTC", **options}
    expression = arguments.pop("expression")
    with pytest.raises(error, match=message):
        next_fire(expression, now=0.0, **arguments)  # type: ignore[arg-type]


def test_describe_wait_gives_the_next_fire_as_the_deadline() -> None:
    now = at(2026, 1, 2, 18, 0).timestamp()
    description = CronListener.describe_wait((WEEKDAYS_AT_7,), {"tz": "Europe/Berlin"}, now=now)
    assert description == WaitDescription(deadline=at(2026, 1, 5, 7, 0).timestamp())


def test_describe_wait_describes_nothing_for_arguments_the_poll_will_refuse() -> None:
    assert CronListener.describe_wait(("not cron",), {}, now=0.0) is NOTHING_TO_DESCRIBE


def test_a_malformed_schedule_fails_where_the_wait_is_written() -> None:
    with pytest.raises(
        WorkflowDefinitionError, match=r"^wait_for_event\(CronListener, \.\.\.\): CronListener"
    ):
        wait_for_event(CronListener, "every morning")
    with pytest.raises(WorkflowDefinitionError, match=r"Nowhere/Zone"):
        wait_for_event(CronListener, "0 7 * * 1-5", tz="Nowhere/Zone")
    with pytest.raises(WorkflowDefinitionError, match=r"catch_up"):
        wait_for_event(CronListener, "0 7 * * 1-5", catch_up="some")


def test_a_schedule_from_an_upstream_step_is_checked_when_the_wait_runs() -> None:
    @step
    def expression() -> str:
        return "every morning"

    wait_for_event(CronListener, expression.step())  # not known yet: no error here
