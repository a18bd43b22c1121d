"""Checks of a listener class and its arguments, made where the wait is written.

``wait_for_event`` calls :func:`check_listener_call` so that mistakes a resume cannot fix
(a plain ``def poll_for_event``, a constructor that needs arguments, arguments that do not
fit ``poll_for_event``) fail at once, naming the class, and never reach the engine. Only
signatures are read here: no listener is instantiated and nothing is called.
"""

from __future__ import annotations

import inspect
import math
import re
import weakref
from typing import final

from evkit.errors import WorkflowDefinitionError
from evkit.listeners.base import EventListener

# Hooks the engine awaits; each one a listener overrides must be an `async def`.
_ASYNC_HOOKS = ("poll_for_event", "event_checkpointed", "poll_cancelled")


@final
class _PollSignature:
    """What checking a call of ``poll_for_event`` needs, computed once per class."""

    __slots__ = ("accepted", "signature")

    def __init__(self, signature: inspect.Signature | None) -> None:
        self.signature = signature  # None: it cannot be read (a builtin); nothing is checked
        # Call shapes (the positional count, then the keyword names) that bind: whether a
        # call fits depends on nothing else, and a set lookup is far cheaper than a bind
        # for a loop making 100,000 waits.
        self.accepted: set[tuple[object, ...]] = set()


_checked: weakref.WeakKeyDictionary[type[EventListener], _PollSignature] = weakref.WeakKeyDictionary()
# The class checked last, and its entry: skips the weak dictionary's lookup (it makes a
# weakref per call). One tuple, so threads always read a matching pair.
_last: tuple[type[EventListener] | None, _PollSignature] = (None, _PollSignature(None))


def _set_last(listener: type[EventListener], poll: _PollSignature) -> None:
    global _last
    _last = (listener, poll)


def check_listener_call(
    listener: type[EventListener], args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    """Check that the engine will be able to make ``listener()`` and await its poll with these arguments.

    The class is checked once (the result is cached per class); the arguments on every
    call, by their shape (how many positional ones, which keywords).

    Raises:
        WorkflowDefinitionError: The constructor needs arguments, a hook is not an
            ``async def``, ``poll_for_event`` is not overridden, or the arguments do not
            fit the signature of ``poll_for_event``.
    """
    last_class, poll = _last
    if listener is not last_class:  # a loop making many waits asks for one class over and over
        cached = _checked.get(listener)
        if cached is None:
            cached = _checked[listener] = _check_class(listener)
        poll = cached
        _set_last(listener, poll)
    shape = (len(args), *kwargs) if kwargs else (len(args),)
    if poll.signature is None or shape in poll.accepted:
        return
    try:
        poll.signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise WorkflowDefinitionError(
            f"Listener class {listener.__qualname__!r}: the arguments of wait_for_event do not "
            f"fit poll_for_event{_shown(poll.signature)}: {exc}. Pass what "
            "poll_for_event takes (after self): wait_for_event passes its arguments on to it."
        ) from None
    poll.accepted.add(shape)


def _check_class(listener: type[EventListener]) -> _PollSignature:
    name = listener.__qualname__
    try:
        inspect.signature(listener).bind()
    except TypeError:
        raise WorkflowDefinitionError(
            f"Listener class {name!r} cannot be made with no arguments: its constructor is "
            f"{name}{_shown(inspect.signature(listener))}. The engine makes a fresh instance with "
            f"{name}() for every wait (and again on resume). Pass what the listener needs as "
            "arguments of wait_for_event (they reach poll_for_event), or give the constructor's "
            "parameters defaults."
        ) from None
    except ValueError:  # pragma: no cover - a class whose signature cannot be read
        pass
    if listener.poll_for_event is EventListener.poll_for_event:
        raise WorkflowDefinitionError(
            f"Listener class {name!r} does not override poll_for_event. Define "
            "`async def poll_for_event(self, ...)` returning the event."
        )
    for hook in _ASYNC_HOOKS:
        method = inspect.getattr_static(listener, hook)
        function = method.__func__ if isinstance(method, (staticmethod, classmethod)) else method
        if callable(function) and not inspect.iscoroutinefunction(function) and not _says_awaitable(function):
            raise WorkflowDefinitionError(
                f"Listener class {name!r}: {hook} must be a coroutine function (`async def "
                f"{hook}(self, ...)`), got a plain {type(function).__name__}: the engine awaits "
                f"what it returns. Write `async def {hook}`; to call blocking code inside it, use "
                "`await asyncio.to_thread(...)` so the event loop keeps running. (A plain def that "
                "returns an awaitable on purpose says so with a return annotation `-> Awaitable[...]`.)"
            )
    try:
        signature = inspect.signature(listener.poll_for_event)
    except ValueError:  # pragma: no cover - a builtin without a signature
        return _PollSignature(None)
    if not isinstance(inspect.getattr_static(listener, "poll_for_event"), (staticmethod, classmethod)):
        # Read from the class, a plain function still has `self`: the engine binds it.
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])
    return _PollSignature(signature)


def _shown(signature: inspect.Signature) -> inspect.Signature:
    """The signature as a message shows it: parameters only."""
    return signature.replace(return_annotation=inspect.Signature.empty)


def _says_awaitable(function: object) -> bool:
    """True when a plain function's return annotation names an awaitable type.

    A plain ``def`` may hand back another coroutine on purpose (to save a coroutine per
    wait); its annotation is how the check tells it from a forgotten ``async``. Read as
    text, so string annotations (``from __future__ import annotations``) need no import.
    """
    try:
        annotation = inspect.get_annotations(function).get("return")  # type: ignore[arg-type]
    except TypeError:
        return False
    return annotation is not None and _AWAITABLE_NAMES.search(str(annotation)) is not None


_AWAITABLE_NAMES = re.compile(r"\b(Awaitable|Coroutine|Future|Task)\b")


def positional_range(signature: inspect.Signature) -> tuple[int, float] | None:
    """(least, most) positional arguments a call without keywords may pass, if that decides it.

    ``None`` when a required keyword-only parameter means only ``Signature.bind`` can tell.
    """
    least, most = 0, 0.0
    for param in signature.parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            most = math.inf
        elif param.kind is param.VAR_KEYWORD:
            continue
        elif param.kind is param.KEYWORD_ONLY:
            if param.default is param.empty:
                return None  # a required keyword: only bind() can explain what is missing
        else:
            most += 1
            least += param.default is param.empty
    return least, most
