"""The listener interface (``EventListener``), the timer listener and the event context.

A listener is a stateless class with a no-argument constructor. The engine makes a fresh
instance per wait, awaits ``poll_for_event`` on the loop, checkpoints what it returns, and
only then awaits ``event_checkpointed``. Listeners never touch the store themselves.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from evkit.context import current_clock

Event = object
"""Whatever ``poll_for_event`` returns. It must be picklable: it is checkpointed."""


class EventListener:
    """Base class of event listeners: subclass it and write ``poll_for_event``.

    Listeners are stateless: the engine makes a fresh instance with the no-argument
    constructor for every wait (and again on resume). The class itself is stored with
    cloudpickle so a resumed run can rebuild it, so it must be picklable.

    Besides the instance hooks, a listener class may describe its waits for the engine,
    the store and the widget (all optional): :meth:`wait_deadline`,
    :meth:`wait_inbox_key` and :attr:`uses_inbox`.
    """

    uses_inbox: ClassVar[bool] = False
    """True when waits take events from the run's inbox (``send_event``, HTTP POSTs), so a
    run that has such waits reads its stored inbox before its steps start."""

    @classmethod
    def wait_deadline(cls, *args: object, **kwargs: object) -> float | None:
        """Optional: when a wait with these poll arguments fires by itself (epoch seconds).

        Stored with the wait (column ``deadline``) and shown as "time left". The default
        is ``None``: the wait ends only when its event comes.
        """
        return None

    @classmethod
    def wait_inbox_key(cls, *args: object, **kwargs: object) -> str | None:
        """Optional: the inbox key a wait with these poll arguments takes its event from.

        Shown by the widget beside the wait (with a form to send to it). The default is
        ``None``: the wait does not read the inbox.
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

    def source_id(self, event: Event) -> str | None:
        """Optional: the event's id at its source (a stream entry id, a message id).

        It is stored with the checkpoint (column ``source_id`` of the ``events`` view), so
        after a crash a source can tell which of its messages are already taken.
        """
        return None

    async def poll_cancelled(self, *args: object, **kwargs: object) -> None:
        """Optional: clean up after a wait was cancelled (same arguments as the poll)."""


class TimerListener(EventListener):
    """Waits until an absolute deadline (seconds since the epoch); the event is ``None``.

    The deadline is an argument, so it is stored with the step: after a restart the
    timer waits only the time that is left, and fires at once if it has passed.
    """

    async def poll_for_event(self, timestamp: float) -> None:  # type: ignore[override]
        """Sleep on the loop until ``timestamp``; no thread is held."""
        await current_clock().sleep_until(float(timestamp))

    @classmethod
    def wait_deadline(cls, *args: object, **kwargs: object) -> float | None:
        """The timer's deadline: its first argument."""
        return float(args[0]) if args else None  # type: ignore[arg-type]

    @staticmethod
    def deadline_of(timestamp: float) -> dt.datetime:
        """The deadline as a UTC datetime (for the ``events`` view and the widget)."""
        return dt.datetime.fromtimestamp(float(timestamp), tz=dt.UTC)
