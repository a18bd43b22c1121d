"""Schedules as an event source: ``CronListener`` fires at the next time a cron expression matches.

The fire time is computed once, when the wait first starts (``describe_wait``), and kept
in the store as the wait's deadline, like a timer's: a restart waits only what is left.
The pure computation (:func:`next_fire`, with its ``catch_up`` rules) does no I/O and
reads no clock; croniter and zoneinfo are imported only when a schedule is used.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal, cast, get_args

from evkit.context import get_event_context
from evkit.listeners.base import NOTHING_TO_DESCRIBE, EventListener, WaitDescription

CatchUp = Literal["latest", "all", "skip"]
"""What a wait given ``after=`` does with the fires it missed (see :func:`next_fire`)."""

_CATCH_UP: tuple[str, ...] = get_args(CatchUp)


def next_fire(
    expression: str,
    *,
    tz: str = "UTC",
    now: float,
    after: dt.datetime | None = None,
    catch_up: CatchUp = "latest",
) -> dt.datetime:
    """The fire time a schedule's wait that starts at ``now`` waits for.

    Without ``after``, the first time strictly after ``now`` that ``expression`` matches
    in time zone ``tz``. With ``after`` (the previous fire of a recurring job, i.e. the
    value its previous wait returned), the fires strictly after ``after`` and at or
    before ``now`` are *missed* (the kernel was down, or a step took long), and
    ``catch_up`` says which one comes now:

    - ``"latest"``: the newest missed fire (the others are dropped);
    - ``"all"``: the oldest missed fire, so a loop delivers each missed one in turn;
    - ``"skip"``: none; the next fire after ``now``.

    With nothing missed, every rule gives the first fire after ``after`` (which is after
    ``now``). A missed fire is due at once: the wait ends without sleeping.

    Daylight saving time follows croniter: a wall-clock time that does not exist on the
    spring-forward day (02:30 in Europe/Berlin) fires at the first time after the gap
    (03:00) for a daily expression, while an hourly one skips the hour; a time that occurs
    twice on the fall-back day fires twice (02:30 +02:00, then 02:30 +01:00).

    Args:
        expression: A cron expression of five fields (minute hour day-of-month month
            day-of-week), e.g. ``"0 7 * * 1-5"``, or a croniter alias such as ``"@daily"``.
        tz: The IANA time zone the expression is read in, e.g. ``"Europe/Berlin"``.
        now: When the wait starts (epoch seconds).
        after: The previous fire (an aware datetime), or ``None``.
        catch_up: ``"latest"``, ``"all"`` or ``"skip"``.

    Returns:
        The fire time, an aware datetime in ``tz``.

    Raises:
        TypeError: An argument has the wrong type (``after`` naive, for instance).
        ValueError: ``expression``, ``tz`` or ``catch_up`` is not a valid value.
        ImportError: croniter is not installed (``pip install 'evkit[schedule]'``).
    """
    zone = time_zone(tz)
    check_expression(expression)
    if catch_up not in _CATCH_UP:
        raise ValueError(f"CronListener: `catch_up` must be one of {_CATCH_UP!r}, got {catch_up!r}.")
    now_at = dt.datetime.fromtimestamp(now, zone)
    if after is None:
        return _next_after(expression, now_at)
    if not isinstance(after, dt.datetime) or after.utcoffset() is None:  # type: ignore[redundant-expr]
        raise TypeError(
            f"CronListener: `after` must be an aware datetime (the value of the previous wait), "
            f"got {after!r}."
        )
    first_missed = _next_after(expression, after.astimezone(zone))
    # Instants compare by timestamp: Python compares two datetimes of one zone by their
    # wall time, which calls 02:30 CEST and 02:30 CET equal on the fall-back day.
    if first_missed.timestamp() > now or catch_up == "all":
        return first_missed
    if catch_up == "latest":
        return _latest_at_or_before(expression, now_at)
    return _next_after(expression, now_at)


def time_zone(tz: object) -> dt.tzinfo:
    """The ``ZoneInfo`` named ``tz``.

    Raises:
        TypeError: ``tz`` is not a str.
        ValueError: No time zone has that name here (``pip install tzdata`` adds the
            database where the system has none).
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(tz, str):
        raise TypeError(f"CronListener: `tz` must be an IANA time zone name (a str), got {tz!r}.")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"CronListener: `tz` {tz!r} is not a time zone known here. Use an IANA name such as "
            "'Europe/Berlin' or 'UTC'; if the system has no time zone database, `pip install tzdata` "
            "(the `schedule` extra includes it)."
        ) from exc


def check_expression(expression: object) -> None:
    """Check that croniter reads ``expression`` as a five-field cron expression (or an alias).

    Raises:
        TypeError: ``expression`` is not a str.
        ValueError: It is not a cron expression croniter accepts.
        ImportError: croniter is not installed.
    """
    croniter = _croniter()
    if not isinstance(expression, str):
        raise TypeError(f"CronListener: `expression` must be a cron expression (a str), got {expression!r}.")
    fields = expression.split()
    # croniter also takes six fields, reading the sixth as *seconds*: "0 0 7 * * 1-5" would
    # mean something no crontab means. Five fields only, as in a crontab.
    if not (len(fields) == 5 or (len(fields) == 1 and fields[0].startswith("@"))) or not croniter.is_valid(
        expression
    ):
        raise ValueError(
            f"CronListener: `expression` {expression!r} is not a cron expression. Expected five "
            "fields (minute hour day-of-month month day-of-week), e.g. '0 7 * * 1-5' for 07:00 "
            "on weekdays, or an alias such as '@daily'."
        )


def _next_after(expression: str, start: dt.datetime) -> dt.datetime:
    return cast("dt.datetime", _croniter()(expression, start).get_next(dt.datetime))


def _latest_at_or_before(expression: str, at: dt.datetime) -> dt.datetime:
    # croniter's get_prev is strictly before its start: a fire exactly at `at` is the one
    # after that previous fire.
    schedule = _croniter()(expression, at)
    previous = cast("dt.datetime", schedule.get_prev(dt.datetime))
    following = _next_after(expression, previous)
    return following if following.timestamp() <= at.timestamp() else previous


def _croniter() -> Any:
    # The first schedule of a process imports croniter here, on the loop (once, like aiohttp
    # for the first HTTP wait), so `import evkit` does not pay for it.
    try:
        from croniter import croniter
    except ImportError as exc:  # pragma: no cover - croniter is in the test environment
        raise ImportError("CronListener needs croniter: pip install 'evkit[schedule]'.") from exc
    return croniter


class CronListener(EventListener):
    """Waits for the next time a cron expression matches; the event is that time.

    ``workflow.wait_for_event(workflow.CronListener, "0 7 * * 1-5", tz="Europe/Berlin")``
    ends at the next 07:00 on a weekday in Berlin and returns that time as an aware
    datetime. The fire time is fixed when the wait first starts and stored as its
    deadline, so after a restart the wait ends at that time (at once if it has passed),
    not at one computed anew.

    A recurring job is a loop of continuations that passes each fire to the next wait as
    ``after=``; ``catch_up`` then says what happens to fires missed while the kernel was
    down (see :func:`next_fire`)::

        @workflow.step
        def report(fired_at):
            ...  # the work
            return report.step(workflow.wait_for_event(
                workflow.CronListener, "0 7 * * 1-5", tz="Europe/Berlin", after=fired_at))
    """

    @classmethod
    def describe_wait(
        cls, args: tuple[object, ...], kwargs: Mapping[str, object], *, now: float
    ) -> WaitDescription:
        """The wait's deadline: the fire time :func:`next_fire` gives at ``now``.

        Arguments that are not valid describe nothing here: the poll raises for them.
        """
        expression = args[0] if args else kwargs.get("expression")
        try:
            fire = next_fire(
                cast("str", expression),
                tz=cast("str", kwargs.get("tz", "UTC")),
                now=now,
                after=cast("dt.datetime | None", kwargs.get("after")),
                catch_up=cast("CatchUp", kwargs.get("catch_up", "latest")),
            )
        except (TypeError, ValueError, ImportError):
            return NOTHING_TO_DESCRIBE
        return WaitDescription(deadline=fire.timestamp())

    @classmethod
    def check_arguments(cls, args: tuple[object, ...], kwargs: Mapping[str, object]) -> None:
        """The expression, ``tz``, ``after`` and ``catch_up`` are checked where the wait is written.

        Raises:
            TypeError: An argument has the wrong type.
            ValueError: ``expression``, ``tz`` or ``catch_up`` is not a valid value.
        """
        expression = args[0] if args else kwargs.get("expression")
        options = {k: v for k, v in kwargs.items() if k in ("tz", "after", "catch_up")}
        next_fire(expression, now=0.0, **options)  # type: ignore[arg-type]

    async def poll_for_event(  # type: ignore[override]
        self,
        expression: str,
        *,
        tz: str = "UTC",
        after: dt.datetime | None = None,
        catch_up: CatchUp = "latest",
    ) -> dt.datetime:
        """Sleep on the loop until the wait's fire time; return it (aware, in ``tz``).

        Raises:
            TypeError: An argument has the wrong type.
            ValueError: ``expression``, ``tz`` or ``catch_up`` is not valid.
            ImportError: croniter is not installed (``pip install 'evkit[schedule]'``).
        """
        context = get_event_context()
        # Checked on every poll, so a wrong argument fails the wait with its message even
        # when a stored deadline exists.
        fire = next_fire(
            expression, tz=tz, now=context.clock.now(), after=after, catch_up=catch_up
        ).timestamp()
        deadline = context.deadline if context.deadline is not None else fire
        await context.clock.sleep_until(deadline)
        return dt.datetime.fromtimestamp(deadline, time_zone(tz))
