"""Context variables that tell a running step or listener where it is.

The engine sets them around every step body and listener hook; user code reads them with
:func:`get_current_workflow_id`, :func:`get_current_step_id` and :func:`get_event_context`.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

from evkit.clock import Clock, WallClock
from evkit.services import ServiceRegistry


@dataclass(frozen=True, slots=True, kw_only=True)
class StepContext:
    """Where a step body or listener hook runs.

    Attributes:
        workflow_id: The run's id.
        step_id: The step's id in the run.
        attempt: 1 for the first attempt (or poll), one more on each retry or re-poll.
        clock: The clock timers must use (a ``FakeClock`` in tests).
    """

    workflow_id: str
    step_id: str
    attempt: int = 1
    clock: Clock = field(default_factory=WallClock)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventContext(StepContext):
    """The context of an event step's listener hooks.

    Attributes:
        event_id: A stable id for this event: the same on every poll, commit and resume
            of this step in this run. Use it to make ``event_checkpointed`` idempotent.
        services: The engine's services listeners share (the inbox, the HTTP server, named
            store reads): ``services.require(Inbox)``.
        deadline: When this wait fires by itself (epoch seconds), as the listener's
            ``describe_wait`` said when the wait first started. Kept in the store, so a
            poll after a restart gets the same one and waits only what is left. ``None``
            when the wait has no deadline (or outside a poll).
    """

    event_id: str
    services: ServiceRegistry = field(default_factory=ServiceRegistry)
    deadline: float | None = None


_current: contextvars.ContextVar[StepContext] = contextvars.ContextVar("evkit_step_context")
_WALL_CLOCK = WallClock()


def set_context(context: StepContext) -> contextvars.Token[StepContext]:
    """Make ``context`` current (the engine calls this; user code only reads it)."""
    return _current.set(context)


def reset_context(token: contextvars.Token[StepContext]) -> None:
    """Undo :func:`set_context`."""
    _current.reset(token)


def _get(what: str) -> StepContext:
    try:
        return _current.get()
    except LookupError:
        raise LookupError(
            f"{what} was called outside a workflow step: call it inside a step body or a "
            "listener hook (poll_for_event, event_checkpointed, poll_cancelled)."
        ) from None


def get_current_workflow_id() -> str:
    """Return the id of the run whose step is executing.

    Raises:
        LookupError: Called outside a step or listener hook.
    """
    return _get("get_current_workflow_id()").workflow_id


def get_current_step_id() -> str:
    """Return the id of the step that is executing.

    Raises:
        LookupError: Called outside a step or listener hook.
    """
    return _get("get_current_step_id()").step_id


def get_event_context() -> EventContext:
    """Return the context of the event step whose listener hook is running.

    Raises:
        LookupError: Called outside ``poll_for_event``, ``event_checkpointed`` or
            ``poll_cancelled``.
    """
    context = _get("get_event_context()")
    if not isinstance(context, EventContext):
        raise LookupError(
            f"get_event_context() was called in step {context.step_id!r}, which is not an "
            "event step: call it inside a listener hook."
        )
    return context


def current_clock() -> Clock:
    """The clock of the running step, or the wall clock outside any step."""
    context = _current.get(None)
    return context.clock if context is not None else _WALL_CLOCK
