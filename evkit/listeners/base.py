"""The listener interface (``EventListener``), the timer listener and the event context.

A listener is a stateless class with a no-argument constructor. The engine makes a fresh
instance per wait, awaits ``poll_for_event`` on the loop, checkpoints what it returns, and
only then awaits ``event_checkpointed``. Listeners never touch the store themselves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, cast

from evkit import codec
from evkit.context import current_clock

if TYPE_CHECKING:
    import asyncio

    from evkit.context import EventContext

Event = object
"""Whatever ``poll_for_event`` returns. It must be picklable: it is checkpointed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitDescription:
    """What one wait says of itself, for the store's ``waiting`` row and the live view.

    Attributes:
        deadline: When the wait fires by itself (epoch seconds), shown as "time left",
            and as the step's label (a local time) when it has no other.
        inbox_key: The inbox key it takes its event from (``send_event``'s key), shown
            with a form to send to it.
        label: What tells this wait apart for the user (a key, a stream, a topic): the
            step's text in the widget, the static view and their event tables, unless
            the step has a ``name=``.
        args_text: How the store (``args`` of the ``events`` view) and the views show the
            poll's arguments, when their JSON would not read well (a timer's deadline as
            a local time); ``None``: their JSON.
    """

    deadline: float | None = None
    inbox_key: str | None = None
    label: str | None = None
    args_text: str | None = None


NOTHING_TO_DESCRIBE = WaitDescription()


class EventListener:
    """Base class of event listeners: subclass it and write ``poll_for_event``.

    Listeners are stateless: the engine makes a fresh instance with the no-argument
    constructor for every wait (and again on resume). The class itself is stored with
    cloudpickle so a resumed run can rebuild it, so it must be picklable.

    Besides the instance hooks, a listener class may describe its waits for the engine,
    the store and the widget (all optional): :meth:`describe_wait`, :attr:`uses_inbox`
    and :meth:`wake_when_ready`.
    """

    uses_inbox: ClassVar[bool] = False
    """True when waits take events from the run's inbox (``send_event``, HTTP POSTs), so a
    run that has such waits reads its stored inbox before its steps start."""

    @classmethod
    def check_arguments(cls, args: tuple[object, ...], kwargs: Mapping[str, object]) -> None:
        """Optional: refuse poll arguments that are wrong whatever happens later.

        Called by ``wait_for_event`` where the wait is written, when none of the
        arguments is an upstream step's result: a mistake (a malformed expression, an
        unknown time zone) then fails there, not in the run, where polling again after a
        resume could not fix it. The default accepts everything.

        Raises:
            ValueError, TypeError: An argument is wrong; the message says which and why.
        """

    @classmethod
    def describe_wait(
        cls, args: tuple[object, ...], kwargs: Mapping[str, object], *, now: float
    ) -> WaitDescription:
        """Optional: what a wait with these poll arguments says of itself.

        Called once per wait, before the poll. The default describes nothing: the wait
        ends only when its event comes and reads no inbox. A deadline is kept from the
        step's first wait: after a restart the stored one wins, and the poll finds it in
        ``get_event_context().deadline``.

        Args:
            args: The poll's positional arguments (upstream results resolved).
            kwargs: The poll's keyword arguments.
            now: The clock's time as the wait starts (epoch seconds; a ``FakeClock``'s in
                tests), for deadlines relative to it (a schedule's next fire).

        Returns:
            Its deadline, inbox key, label and readable arguments, each ``None`` if it
            has none.
        """
        return NOTHING_TO_DESCRIBE

    @classmethod
    def wake_when_ready(
        cls, context: EventContext, args: tuple[object, ...], kwargs: Mapping[str, object]
    ) -> asyncio.Future[None] | None:
        """Optional: a future that resolves once a poll with these arguments may return at once.

        For sources that know when an event is there without a poll running (the inbox
        does). The engine then keeps the wait *parked*: stored and shown as waiting, with
        no task, listener or poll until the future resolves (a big fan-out of waits then
        holds one future per wait). The poll that follows may still wait, as any poll.
        The engine cancels the future if the wait is cancelled while parked; nothing may
        be taken at the source before the poll. The default, ``None``: poll now.

        Args:
            context: The wait's context, as its poll would get it (the run, the clock,
                the engine's services).
            args: The poll's positional arguments (upstream results resolved).
            kwargs: The poll's keyword arguments.
        """
        return None

    def __init__(self) -> None:
        """Optional constructor. Only the constructor with no arguments is called."""

    async def poll_for_event(self, *args: object, **kwargs: object) -> Event:
        """Return only when the event is received.

        Called with the arguments given to ``wait_for_event`` (upstream step results
        among them resolved). Until the returned event is checkpointed it may be called
        again (after a crash): nothing must be committed at the source here.

        Raises:
            NotImplementedError: The subclass did not override it.
        """
        raise NotImplementedError(
            f"{type(self).__qualname__} must override `async def poll_for_event(self, ...)`"
        )

    async def event_checkpointed(self, event: Event) -> None:
        """Optional: commit the event at its source (an ack, an offset, a reply).

        Called only after the event is durably checkpointed, and called again with the
        stored event if the run crashed before the commit was recorded, so it must be
        idempotent: ``get_event_context().event_id`` is stable for this purpose.
        """

    def readable(self, event: Event) -> str:
        """Optional: how the store shows the event (column ``payload`` of the ``events`` view).

        The default is JSON where the value allows, else its repr.
        """
        return codec.readable(event)

    def source_id(self, event: Event) -> str | None:
        """Optional: the event's id at its source (a stream entry id, a message id).

        It is stored with the checkpoint (column ``source_id`` of the ``events`` view), so
        after a crash a source can tell which of its messages are already taken.
        """
        return None

    async def poll_cancelled(self, *args: object, **kwargs: object) -> None:
        """Optional: clean up after a wait was cancelled (same arguments as the poll).

        Called when the run is cancelled, when the wait's ``timeout_seconds`` passes, and
        for a losing branch of ``wait_for_any``, also one whose poll had already returned
        an event: that event is never checkpointed, so release anything the poll claimed
        at the source (the next reader must get it). Called on the instance that polled.
        """


class TimerListener(EventListener):
    """Waits until an absolute deadline (seconds since the epoch); the event is ``None``.

    The deadline is an argument, so it is stored with the step: after a restart the
    timer waits only the time that is left, and fires at once if it has passed.
    """

    async def poll_for_event(self, timestamp: float) -> None:  # type: ignore[override]
        """Sleep on the loop until ``timestamp``; no thread is held."""
        await current_clock().sleep_until(float(timestamp))

    @classmethod
    def wake_when_ready(
        cls, context: EventContext, args: tuple[object, ...], kwargs: Mapping[str, object]
    ) -> asyncio.Future[None] | None:
        """Park the wait until its deadline, on the clock's alarm (see the base class).

        Not for a subclass with its own ``poll_for_event``, nor with a clock that has no
        ``alarm`` (one of your own): those waits poll from the start.
        """
        timestamp = args[0] if args else kwargs.get("timestamp")
        alarm = getattr(context.clock, "alarm", None)
        if cls.poll_for_event is not TimerListener.poll_for_event or alarm is None:
            return None
        if not isinstance(timestamp, (int, float)) or timestamp <= context.clock.now():
            return None
        return cast("asyncio.Future[None]", alarm(float(timestamp)))

    @classmethod
    def describe_wait(
        cls, args: tuple[object, ...], kwargs: Mapping[str, object], *, now: float
    ) -> WaitDescription:
        """The timer's deadline (its first argument); its arguments show it as a local time.

        The deadline is the step's label, formatted where it is shown (the widget's
        browser has its own time zone), so ``label`` stays ``None``.
        """
        timestamp = args[0] if args else kwargs.get("timestamp")
        if timestamp is None:
            return NOTHING_TO_DESCRIBE
        deadline = float(timestamp)  # type: ignore[arg-type]
        when = local_iso(deadline)
        readable = codec.readable([when] if args else {"args": [], "kwargs": {"timestamp": when}})
        return WaitDescription(deadline=deadline, args_text=readable)

    @staticmethod
    def deadline_of(timestamp: float) -> dt.datetime:
        """The deadline as a UTC datetime (for the ``events`` view and the widget)."""
        return dt.datetime.fromtimestamp(float(timestamp), tz=dt.UTC)


def local_iso(timestamp: float) -> str:
    """Epoch seconds as an ISO time in this machine's time zone, with its offset.

    ``2026-12-07T19:03:48.126+01:00``: what a person reads, and still one instant.
    """
    return dt.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="milliseconds")
