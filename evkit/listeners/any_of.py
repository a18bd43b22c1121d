"""The listener behind ``workflow.wait_for_any``: several waits, of which the first event wins.

It polls every branch as a task of its own, decides the winner when the first event is
received (before any checkpoint), cancels the other branches and runs their cleanup
hooks, and returns ``(name, event)``. It never touches the store: the engine checkpoints
the winner and then calls :meth:`AnyOfListener.event_checkpointed`, which commits at the
winner's source only. A loser's event is never checkpointed nor committed, so its source
keeps it (its ``poll_cancelled`` gives back what its poll took).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import ClassVar, TypeVar, cast

from evkit import codec
from evkit.context import EventContext, get_event_context, reset_context, set_context
from evkit.listeners.base import NOTHING_TO_DESCRIBE, EventListener, WaitDescription

T = TypeVar("T")
logger = logging.getLogger("evkit")

BranchName = str | int
"""A branch's name: the user's key in a dict of branches, the index in a list."""

Branch = tuple[BranchName, tuple[object, ...], Mapping[str, object], float | None]
"""How a step stores one branch: ``(name, args, kwargs, sleep_seconds)``.

Plain tuples, so upstream step results among the args are found and resolved like any
step argument's. ``sleep_seconds`` is set for a ``workflow.sleep(seconds)`` branch, whose
deadline is the wait's start plus ``seconds``.
"""


class AnyOfListener(EventListener):
    """Polls the branches of one ``wait_for_any`` and returns the first event as ``(name, event)``.

    Not used directly: :func:`any_of_listener` makes a subclass per set of branches,
    whose class attribute names each branch's listener class (so that a resumed run can
    commit the winner with a fresh instance of its class, as for any wait) and whose name
    is what the widget and the store show, e.g. ``any of: approve, reject``.
    """

    branch_listeners: ClassVar[Mapping[BranchName, type[EventListener]]] = {}

    def __init__(self) -> None:
        self._polled: dict[BranchName, tuple[EventListener, tuple[object, ...], Mapping[str, object]]] = {}
        self._deadlines: dict[BranchName, float | None] = {}
        self._cleaned: set[BranchName] = set()
        self._winner: EventListener | None = None

    @classmethod
    def describe_wait(
        cls, args: tuple[object, ...], kwargs: Mapping[str, object], *, now: float
    ) -> WaitDescription:
        """The earliest deadline of the branches, and the first branch's inbox key."""
        branches, started_at = _unpack(args)
        deadlines = []
        inbox_key = None
        for name, branch_args, branch_kwargs, seconds in branches:
            listener = cls.branch_listeners[name]
            description = _describe(listener, branch_args, branch_kwargs, seconds, started_at)
            if description.deadline is not None:
                deadlines.append(description.deadline)
            inbox_key = inbox_key or description.inbox_key
        if not deadlines and inbox_key is None:
            return NOTHING_TO_DESCRIBE
        return WaitDescription(deadline=min(deadlines, default=None), inbox_key=inbox_key)

    async def poll_for_event(  # type: ignore[override]
        self, branches: Sequence[Branch], started_at: float
    ) -> tuple[BranchName, object]:
        """Poll every branch at once; return ``(name, event)`` of the first event received.

        The losers are cancelled and their ``poll_cancelled`` hooks awaited before it
        returns, also those whose poll returned an event after the winner's: they give it
        back to its source.

        Raises:
            Exception: What the first branch to finish raised (the wait then fails).
        """
        context = get_event_context()
        loop = asyncio.get_running_loop()
        first: asyncio.Future[tuple[BranchName, asyncio.Task[object]]] = loop.create_future()
        tasks: dict[BranchName, asyncio.Task[object]] = {}
        for name, branch_args, branch_kwargs, seconds in branches:
            listener_class = self.branch_listeners[name]
            description = _describe(listener_class, branch_args, branch_kwargs, seconds, started_at)
            args = (description.deadline,) if seconds is not None else tuple(branch_args)
            listener = listener_class()
            self._polled[name] = (listener, args, branch_kwargs)
            self._deadlines[name] = description.deadline
            task = loop.create_task(
                _in_context(
                    _branch_context(context, description.deadline),
                    listener.poll_for_event(*args, **branch_kwargs),
                ),
                name=f"evkit:{context.workflow_id}:{context.step_id}[{name!r}]",
            )
            # The winner is the first branch whose poll ends, decided as it ends: a branch
            # that ends later in the same loop iteration is a loser like the others.
            task.add_done_callback(functools.partial(_decide, first, name))
            tasks[name] = task
        try:
            name, won = await first
        finally:
            # Also when this wait is cancelled: every branch task ends with it (the engine
            # then calls poll_cancelled, which runs the branches' cleanup hooks).
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        await self._clean_up(exclude=name)
        try:
            event = won.result()
        except Exception as exc:  # a branch that failed fails the wait
            exc.add_note(
                f"Raised by branch {name!r} ({type(self._polled[name][0]).__qualname__}) of wait_for_any."
            )
            raise
        self._winner = self._polled[name][0]
        self._cleaned.add(name)
        return name, event

    async def event_checkpointed(self, event: object) -> None:
        """Commit the winner's event at its source (the winner's ``event_checkpointed``).

        Idempotent if the winner's listener is: after a crash it is called again, on a
        fresh instance of the winner's class, with the stored ``(name, event)``.
        """
        # Never called with a timed-out wait's `default`: the engine commits nothing then.
        name, inner = cast("tuple[BranchName, object]", event)
        listener = self._winner or self.branch_listeners[name]()
        await listener.event_checkpointed(inner)

    def source_id(self, event: object) -> str | None:
        """The winner's ``source_id`` of its event."""
        if self._winner is None:
            return None
        return self._winner.source_id(cast("tuple[BranchName, object]", event)[1])

    def readable(self, event: object) -> str:
        """The store's readable form of ``(name, event)``: always a JSON array.

        ``["approve", {"user": "ana"}]``: the event as the winning branch's listener shows
        it (its ``readable``: an ask's answer with ``answered_by`` and ``answered_at``).
        A form that is not JSON is a JSON string, so SQL can always read the winner's name
        (``payload ->> '$[0]'``).
        """
        if not (isinstance(event, tuple) and len(event) == 2 and isinstance(event[0], (str, int))):
            return codec.readable(event)  # a timed-out wait's `default`
        name, inner = event
        winner = self._winner
        if winner is None or type(winner).readable is EventListener.readable:  # the plain form
            text = codec.readable(inner)
            is_json = codec.to_json(inner) is not None
        else:
            text = winner.readable(inner)
            is_json = _is_json(text)
        if not is_json:
            text = json.dumps(text)
        return f"[{json.dumps(name)}, {text}]"

    async def poll_cancelled(self, *args: object, **kwargs: object) -> None:
        """Run the cleanup hook of every branch not cleaned up yet (the wait was cancelled)."""
        await self._clean_up(exclude=None)

    async def _clean_up(self, *, exclude: BranchName | None) -> None:
        """Await ``poll_cancelled`` of each polled branch but ``exclude``, once each."""
        context = get_event_context()
        for name, (listener, args, kwargs) in self._polled.items():
            if name == exclude or name in self._cleaned:
                continue
            self._cleaned.add(name)
            branch = _branch_context(context, self._deadlines.get(name))
            await _in_context(branch, _cleanup(listener, args, kwargs))


def any_of_listener(branch_listeners: Mapping[BranchName, type[EventListener]]) -> type[AnyOfListener]:
    """The :class:`AnyOfListener` subclass for branches with these names and listener classes.

    Made once per distinct set (a DAG with many such waits pickles each class once).
    """
    key = tuple(branch_listeners.items())
    made = _made.get(key)
    if made is None:
        label = "any of: " + ", ".join(str(name) for name in branch_listeners)
        made = _made[key] = cast(
            "type[AnyOfListener]",
            type(
                label,
                (AnyOfListener,),
                {
                    "__module__": __name__,
                    "__qualname__": label,
                    "__doc__": f"Waits for the first event of {', '.join(map(repr, branch_listeners))}.",
                    "branch_listeners": dict(branch_listeners),
                    "uses_inbox": any(listener.uses_inbox for listener in branch_listeners.values()),
                },
            ),
        )
    return made


_made: dict[tuple[tuple[BranchName, type[EventListener]], ...], type[AnyOfListener]] = {}


def _decide(
    first: asyncio.Future[tuple[BranchName, asyncio.Task[object]]],
    name: BranchName,
    task: asyncio.Task[object],
) -> None:
    if not first.done():
        first.set_result((name, task))


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _unpack(args: tuple[object, ...]) -> tuple[Sequence[Branch], float]:
    branches, started_at = args
    return cast("Sequence[Branch]", branches), float(cast("float", started_at))


def _describe(
    listener: type[EventListener],
    args: tuple[object, ...],
    kwargs: Mapping[str, object],
    sleep_seconds: float | None,
    started_at: float,
) -> WaitDescription:
    """A branch's description as of the wait's start (the same on every attempt)."""
    if sleep_seconds is not None:
        return WaitDescription(deadline=started_at + sleep_seconds)
    return listener.describe_wait(args, kwargs, now=started_at)


def _branch_context(context: EventContext, deadline: float | None) -> EventContext:
    return dataclasses.replace(context, deadline=deadline)


async def _in_context(context: EventContext, hook: Awaitable[T]) -> T:
    """Await a branch's hook with the branch's own context (its deadline)."""
    token = set_context(context)
    try:
        return await hook
    finally:
        reset_context(token)


async def _cleanup(listener: EventListener, args: tuple[object, ...], kwargs: Mapping[str, object]) -> None:
    try:
        await listener.poll_cancelled(*args, **kwargs)
    except Exception:  # a failing cleanup must not hide the outcome of the wait
        logger.exception(
            "poll_cancelled of %s raised; the branch is cancelled anyway", type(listener).__qualname__
        )
