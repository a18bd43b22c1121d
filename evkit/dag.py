"""Building DAGs from ``@step`` functions and ``wait_for_event``; ids and topological order.

A node is an immutable description of one call. :func:`flatten` turns a node and
everything it depends on into a :class:`FlatDag`: steps in topological order, with
unique ids, whose arguments refer to upstream steps by :class:`Ref`. The flat form is what
the engine executes and the store pickles (it has no deep nesting to overflow pickle's
recursion). This module runs nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import operator
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast, final, overload

from evkit import codec
from evkit.context import current_clock
from evkit.errors import WorkflowDefinitionError
from evkit.gcscope import BIG_RUN_STEPS, fewer_gc_passes
from evkit.listeners.any_of import AnyOfListener, Branch, BranchName, any_of_listener
from evkit.listeners.base import EventListener
from evkit.listeners.checks import check_listener_call, positional_range
from evkit.model import StepKind, StepOptions

P = ParamSpec("P")
R = TypeVar("R")

_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(StepOptions))


class _NoDefault:
    """Marker: ``wait_for_event`` got no ``default``, so a timeout raises."""

    def __repr__(self) -> str:
        return "NO_DEFAULT"

    def __reduce__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT = _NoDefault()


class Runner(Protocol):
    """What ``node.run()`` calls; the API layer registers it (see :func:`set_runner`)."""

    def run(
        self,
        node: StepNode,
        *,
        workflow_id: str | None,
        metadata: Mapping[str, object] | None,
        repoll: Iterable[str] = (),
    ) -> object:
        """Run to the end and return the output."""
        ...

    def run_async(
        self,
        node: StepNode,
        *,
        workflow_id: str | None,
        metadata: Mapping[str, object] | None,
        repoll: Iterable[str] = (),
    ) -> object:
        """Start and return a handle at once."""
        ...


_runner: Runner | None = None


def set_runner(runner: Runner) -> None:
    """Register what ``StepNode.run``/``run_async`` delegate to (done by ``evkit.api``)."""
    global _runner
    _runner = runner


def _get_runner() -> Runner:
    if _runner is None:  # pragma: no cover - evkit/__init__ always registers one
        raise RuntimeError("evkit.api was not imported; import evkit to run workflows.")
    return _runner


def make_options(base: StepOptions | None, overrides: Mapping[str, object], *, where: str) -> StepOptions:
    """Validate option keywords and merge them over ``base``.

    Raises:
        WorkflowDefinitionError: An unknown option or a value of the wrong kind.
    """
    unknown = sorted(set(overrides) - _OPTION_NAMES)
    if unknown:
        raise WorkflowDefinitionError(
            f"{where} got unknown option(s) {', '.join(map(repr, unknown))}. "
            f"Valid options: {', '.join(sorted(_OPTION_NAMES))}."
        )
    options = dataclasses.replace(base or StepOptions(), **overrides)  # type: ignore[arg-type]
    # Runtime checks of what users pass: the types say it, but callers need not obey.
    if options.name is not None and (not isinstance(options.name, str) or not options.name):  # type: ignore[redundant-expr]
        raise WorkflowDefinitionError(f"{where}: `name` must be a non-empty string, got {options.name!r}.")
    if "/" in (options.name or ""):
        raise WorkflowDefinitionError(
            f"{where}: `name` must not contain '/', got {options.name!r} ('/' separates "
            "the steps of a dynamic continuation)."
        )
    if not isinstance(options.max_retries, int) or options.max_retries < 0:  # type: ignore[redundant-expr]
        raise WorkflowDefinitionError(
            f"{where}: `max_retries` must be an integer >= 0, got {options.max_retries!r}."
        )
    if options.retry_backoff_seconds < 0:
        raise WorkflowDefinitionError(
            f"{where}: `retry_backoff_seconds` must be >= 0, got {options.retry_backoff_seconds!r}."
        )
    if codec.to_json(dict(options.metadata)) is None:
        raise WorkflowDefinitionError(
            f"{where}: `metadata` must be a JSON-serializable dict, got {options.metadata!r}."
        )
    return options


class StepNode:
    """One call of a step in a DAG: ``fn.step(...)``, or an event wait.

    Pass it as an argument to other steps, ``run()`` it, or return it from a step to
    continue the workflow with it (a dynamic continuation).
    """

    __slots__ = ("args", "func", "kind", "kwargs", "options")
    kind: StepKind

    def __init__(
        self,
        func: Callable[..., object],
        args: tuple[object, ...],
        kwargs: dict[str, object],
        options: StepOptions,
    ) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.options = options
        self.kind = "function"

    @property
    def name(self) -> str:
        """The step's name (its id in a run is this, made unique)."""
        return self.options.name or str(getattr(self.func, "__name__", "step"))

    def with_options(self, **options: object) -> StepNode:
        """Return a copy of this node with some options changed (``name=``, ``max_retries=``...)."""
        clone = self._copy()
        clone.options = make_options(self.options, options, where=f"Step {self.name!r}")
        return clone

    def _copy(self) -> StepNode:
        clone = object.__new__(type(self))
        for slot in _all_slots(type(self)):
            setattr(clone, slot, getattr(self, slot))
        return clone

    def run(
        self,
        workflow_id: str | None = None,
        metadata: Mapping[str, object] | None = None,
        *,
        repoll: Iterable[str] = (),
    ) -> object:
        """Run the workflow ending at this node and return its output (blocks).

        Works in a script, under pytest and inside a running loop (a notebook cell). On
        a ``workflow_id`` the store already has, it re-runs what changed and reuses every
        other checkpoint; events are polled again only when named in ``repoll`` (see
        ``evkit.run_async``).

        Raises:
            ValueError: ``repoll`` names a step that is not an event step of this DAG.
            StepFailedError: A step failed.
        """
        return _get_runner().run(self, workflow_id=workflow_id, metadata=metadata, repoll=repoll)

    def run_async(
        self,
        workflow_id: str | None = None,
        metadata: Mapping[str, object] | None = None,
        *,
        repoll: Iterable[str] = (),
    ) -> object:
        """Start the workflow and return a handle at once (await it, poll it, cancel it).

        Raises:
            ValueError: ``repoll`` names a step that is not an event step of this DAG.
        """
        return _get_runner().run_async(self, workflow_id=workflow_id, metadata=metadata, repoll=repoll)

    def __repr__(self) -> str:
        return f"<evkit step node {self.name!r}>"


def _all_slots(cls: type) -> list[str]:
    slots: list[str] = []
    for klass in cls.__mro__:
        slots += list(getattr(klass, "__slots__", ()))
    return slots


@final
class EventNode(StepNode):
    """A step that finishes when its listener's event arrives (``wait_for_event``)."""

    __slots__ = ("default", "default_name", "listener", "timeout_seconds")

    def __init__(
        self,
        listener: type[EventListener],
        args: tuple[object, ...],
        kwargs: dict[str, object],
        options: StepOptions,
        *,
        timeout_seconds: float | None,
        default: object,
    ) -> None:
        super().__init__(_event_placeholder, args, kwargs, options)
        self.kind = "event"
        self.listener = listener
        self.timeout_seconds = timeout_seconds
        self.default = default
        # The name when the user gives none (``sleep`` sets it), kept out of the options:
        # views show an options name (the user's ``name=``) over what the listener says of
        # a wait, and this one under it.
        self.default_name: str | None = None

    @property
    def name(self) -> str:
        """The step's name: the ``name=`` given, else a default, else the listener class name."""
        return self.options.name or self.default_name or self.listener.__name__


def _event_placeholder(*args: object, **kwargs: object) -> object:  # pragma: no cover - never called
    raise AssertionError("event steps have no body")


# The latest function defined as a step under each (module, qualified name) in this process:
# a resume, which runs the stored code, warns when a step it still runs is defined here
# differently (a cell edited and run again). Weak, so a redefined function can go.
_LIVE_STEPS: weakref.WeakValueDictionary[tuple[str, str], Callable[..., object]] = (
    weakref.WeakValueDictionary()
)


def live_step_function(func: Callable[..., object]) -> Callable[..., object] | None:
    """The function this process last made a step under ``func``'s module and qualified name."""
    key = (getattr(func, "__module__", None) or "", getattr(func, "__qualname__", None) or "")
    return _LIVE_STEPS.get(key)


class StepFunction(Generic[P, R]):
    """A function decorated with ``@workflow.step``.

    ``fn.step(*args)`` (or ``fn.bind(*args)``) makes a node; calling ``fn(*args)`` just
    calls the function. ``fn.options(...)`` returns a copy with other options.
    """

    def __init__(self, func: Callable[P, R], options: StepOptions) -> None:
        if not callable(func):
            raise WorkflowDefinitionError(f"@workflow.step needs a function, got {func!r}.")
        self.func = func
        self.step_options = options
        functools.update_wrapper(self, func)
        # A callable object may have no name, or no weak reference support: then it is not kept.
        with contextlib.suppress(AttributeError, TypeError):
            _LIVE_STEPS[(func.__module__ or "", func.__qualname__)] = func
        # inspect.signature() is slow next to building a node: computed once, when first needed.
        self._signature: inspect.Signature | None = None
        # How many positional arguments fit when no keyword is given, or None when only
        # Signature.bind can tell. Checking a count builds nothing, unlike a bind.
        self._positional_range: tuple[int, float] | None = None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function directly, outside any workflow."""
        return self.func(*args, **kwargs)

    def step(self, *args: P.args, **kwargs: P.kwargs) -> StepNode:
        """Make a node that calls this function with these arguments.

        Nodes among the arguments are replaced by their results when the workflow runs.

        Raises:
            WorkflowDefinitionError: The arguments do not fit the function's signature.
        """
        try:
            if self._signature is None:
                self._signature = inspect.signature(self.func)
                self._positional_range = positional_range(self._signature)
            fits = self._positional_range
            if kwargs or fits is None or not fits[0] <= len(args) <= fits[1]:
                self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise WorkflowDefinitionError(
                f"Step {self.step_options.name or self.func.__name__!r}: arguments do not fit "
                f"its signature {inspect.signature(self.func)}: {exc}."
            ) from None
        except ValueError:  # pragma: no cover - builtins without a signature
            pass
        return StepNode(self.func, args, dict(kwargs), self.step_options)

    bind = step

    def options(self, **options: object) -> StepFunction[P, R]:
        """Return a copy of this step function with some options changed."""
        where = f"Step {self.step_options.name or self.func.__name__!r}"
        return StepFunction(self.func, make_options(self.step_options, options, where=where))

    def __repr__(self) -> str:
        return f"<evkit step function {self.func.__qualname__}>"


@overload
def step(func: Callable[P, R], /) -> StepFunction[P, R]: ...
@overload
def step(func: None = None, /, **options: object) -> Callable[[Callable[P, R]], StepFunction[P, R]]: ...
def step(
    func: Callable[P, R] | None = None, /, **options: object
) -> StepFunction[P, R] | Callable[[Callable[P, R]], StepFunction[P, R]]:
    """Make a function a workflow step; works bare (``@step``) and called (``@step(name=...)``).

    Args:
        func: The function (when used bare).
        **options: ``name``, ``max_retries``, ``retry_exceptions``,
            ``retry_backoff_seconds``, ``catch_exceptions``, ``metadata``, ``resources``,
            ``executor``.

    Raises:
        WorkflowDefinitionError: An unknown option or a bad option value.
    """
    if func is not None:
        if options:  # pragma: no cover - impossible through the overloads
            raise WorkflowDefinitionError("@step takes either a function or options, not both.")
        return StepFunction(func, StepOptions())
    where = f"@workflow.step({', '.join(f'{k}=' for k in options)})"
    validated = make_options(None, options, where=where)

    def decorate(fn: Callable[P, R]) -> StepFunction[P, R]:
        return StepFunction(fn, validated)

    return decorate


_PICKLABLE_LISTENERS: weakref.WeakSet[type[EventListener]] = weakref.WeakSet()
# Shared by every event node (options are frozen): a pickled DAG then holds one copy.
_EVENT_OPTIONS = StepOptions()


def wait_for_event(
    listener: type[EventListener],
    *args: object,
    timeout_seconds: float | None = None,
    default: object = NO_DEFAULT,
    name: str | None = None,
    **kwargs: object,
) -> EventNode:
    """Make an event step: it finishes when its listener's event is checkpointed and committed.

    The event is what ``listener().poll_for_event(*args, **kwargs)`` returns.

    Args:
        listener: An ``EventListener`` subclass (the class, not an instance).
        *args: Passed to ``poll_for_event``; nodes among them are resolved first.
        timeout_seconds: Give up after this long (counted from when the wait starts,
            kept as an absolute deadline across restarts).
        default: Returned (and checkpointed) on timeout instead of raising.
        name: What the widget, the static view and the store call the step
            (``name="approval"``), as ``@workflow.step(name=...)`` does for a function:
            its id in the run is this name, made unique (``approval``, ``approval_1``...).
            Without it the views show what the listener says of the wait (a key, a
            stream, a timer's deadline) and the id starts with the listener class name.
            Like ``timeout_seconds`` and ``default`` it is not passed on: pass a poll
            argument called ``name`` positionally.
        **kwargs: Passed to ``poll_for_event``.

    Returns:
        A node whose value is the event.

    Raises:
        WorkflowDefinitionError: ``listener`` is not an ``EventListener`` subclass, it cannot
            be pickled, its constructor needs arguments, its ``poll_for_event`` (or another
            hook it overrides) is not an ``async def``, the arguments do not fit
            ``poll_for_event``, ``timeout_seconds`` is not positive, or ``name`` is empty or
            holds a '/'. (It is also a ``TypeError``.)
    """
    if not (isinstance(listener, type) and issubclass(listener, EventListener)):  # type: ignore[redundant-expr]
        raise WorkflowDefinitionError(
            f"wait_for_event() needs an EventListener subclass, got {listener!r}. "
            "Subclass evkit.workflow.EventListener and pass the class itself."
        )
    try:
        if listener not in _PICKLABLE_LISTENERS:  # pickling a class is slow next to a node: once per class
            codec.dumps(listener)
            _PICKLABLE_LISTENERS.add(listener)
    except TypeError as exc:
        raise WorkflowDefinitionError(
            f"Listener class {listener.__qualname__!r} cannot be pickled, so a resumed run "
            f"could not rebuild it: {exc.__cause__ or exc}. Keep listener classes free of "
            "locks, sockets and open files; create those inside poll_for_event."
        ) from exc
    if timeout_seconds is not None and not timeout_seconds > 0:
        raise WorkflowDefinitionError(f"`timeout_seconds` must be positive, got {timeout_seconds!r}.")
    options = _EVENT_OPTIONS
    if name is not None:
        options = make_options(options, {"name": name}, where=f"wait_for_event({listener.__qualname__}, ...)")
    # Mistakes a resume cannot fix fail here, where they are written, not in the run.
    check_listener_call(listener, args, kwargs)
    if not any(isinstance(value, StepNode) for value in (*args, *kwargs.values())):
        try:
            listener.check_arguments(args, kwargs)
        except (TypeError, ValueError) as exc:
            raise WorkflowDefinitionError(f"wait_for_event({listener.__qualname__}, ...): {exc}") from exc
    return EventNode(listener, args, dict(kwargs), options, timeout_seconds=timeout_seconds, default=default)


@step(name="any_of_start")
async def _any_of_start(*upstream: object) -> float:
    # The clock's time once every upstream step of the branches is done: when the wait
    # starts. A step, so its checkpoint keeps it: branch deadlines built on it (a sleep
    # branch's, a listener's describe_wait) are the same on every attempt.
    return current_clock().now()


_ANY_OF_OPTIONS = StepOptions(name="any_of")


def any_of(
    branches: Mapping[str, StepNode] | Sequence[StepNode],
    *,
    timeout_seconds: float | None,
    default: object,
    sleep_seconds: Callable[[EventNode], float | None],
) -> EventNode:
    """Make the event step of ``workflow.wait_for_any`` (documented there).

    ``sleep_seconds`` tells a ``workflow.sleep(seconds)`` branch (its seconds) from other
    waits (``None``).

    Raises:
        WorkflowDefinitionError: ``branches`` is empty or not a dict or list, a key is not
            a non-empty str, a branch is not an event step, has its own
            ``timeout_seconds`` or is itself a ``wait_for_any``, or ``timeout_seconds`` is
            not positive.
    """
    named: list[tuple[BranchName, object]]
    if isinstance(branches, Mapping):
        named = list(branches.items())
        for name, _ in named:
            if not isinstance(name, str) or not name:
                raise WorkflowDefinitionError(
                    f"wait_for_any(): branch names must be non-empty strings, got {name!r}. "
                    "Name each branch with a str key (or pass a list: its branches are named 0, 1, ...)."
                )
    elif isinstance(branches, (list, tuple)):
        named = list(enumerate(branches))
    else:
        raise WorkflowDefinitionError(
            "wait_for_any() needs a dict of named event steps or a list of them, got "
            f"{type(branches).__qualname__}."
        )
    if not named:
        raise WorkflowDefinitionError("wait_for_any() needs at least one branch, got none.")
    if timeout_seconds is not None and not timeout_seconds > 0:
        raise WorkflowDefinitionError(f"`timeout_seconds` must be positive, got {timeout_seconds!r}.")
    listeners: dict[BranchName, type[EventListener]] = {}
    specs: list[Branch] = []
    upstream: dict[int, StepNode] = {}
    for name, node in named:
        if not isinstance(node, EventNode):
            raise WorkflowDefinitionError(
                f"wait_for_any(): branch {name!r} must be an event step (made by wait_for_event() "
                f"or workflow.sleep()), got {node!r}."
            )
        if issubclass(node.listener, AnyOfListener):
            raise WorkflowDefinitionError(
                f"wait_for_any(): branch {name!r} is itself a wait_for_any(); put its branches "
                "in this one instead."
            )
        if node.timeout_seconds is not None:
            raise WorkflowDefinitionError(
                f"wait_for_any(): branch {name!r} has its own `timeout_seconds`; give "
                "`timeout_seconds` (and `default`) to wait_for_any() itself, or add a "
                "workflow.sleep(seconds) branch."
            )
        seconds = sleep_seconds(node)
        listeners[name] = node.listener
        if seconds is not None:
            specs.append((name, (), {}, seconds))
            continue
        specs.append((name, node.args, dict(node.kwargs), None))
        for child in _child_nodes(node):
            upstream.setdefault(id(child), child)
    started = _any_of_start.step(*upstream.values())
    return EventNode(
        any_of_listener(listeners),
        (tuple(specs), started),
        {},
        _ANY_OF_OPTIONS,
        timeout_seconds=timeout_seconds,
        default=default,
    )


# ---------------------------------------------------------------------------- flat DAGs


@final
@dataclass(frozen=True, slots=True)
class Ref:
    """Stands for the result of step ``step_id`` inside a flat step's arguments."""

    step_id: str

    def __reduce__(self) -> tuple[type[Ref], tuple[str]]:
        # The default for slotted dataclasses calls dataclasses.fields() per object, which
        # would dominate pickling a big DAG; a plain tuple needs no such call.
        return (Ref, (self.step_id,))


@final
@dataclass(slots=True)
class FlatStep:
    """One step of a :class:`FlatDag`: a node with its id and its upstream refs.

    Read-only by convention, not ``frozen``: a frozen dataclass sets each field through
    a Python-level ``object.__setattr__`` call, for every step of a big DAG (made in
    ``flatten`` and again on resume).
    """

    step_id: str
    name: str
    kind: StepKind
    func: Callable[..., object] | None
    listener: type[EventListener] | None
    args: tuple[object, ...]
    kwargs: Mapping[str, object]
    options: StepOptions
    upstream: tuple[str, ...]
    timeout_seconds: float | None = None
    default: object = NO_DEFAULT

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # As Ref.__reduce__: the fields as a plain tuple (see there why).
        return (FlatStep, _step_fields(self))


# A FlatStep's fields in declaration order, which is also FlatStep's positional order and
# the order of a pickled FlatDag's rows (see FlatDag._rows).
_FLAT_STEP_FIELDS = tuple(f.name for f in dataclasses.fields(FlatStep))
_step_fields = cast("Callable[[FlatStep], tuple[Any, ...]]", operator.attrgetter(*_FLAT_STEP_FIELDS))
_ARGS_AT = _FLAT_STEP_FIELDS.index("args")
_KWARGS_AT = _ARGS_AT + 1
assert _FLAT_STEP_FIELDS[_KWARGS_AT] == "kwargs", "FlatDag._rows relies on kwargs following args"
_flat_step = FlatStep  # the name pickles made before 0.2 refer to


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class FlatDag:
    """Steps in topological order (every step after its upstream) and the output step."""

    steps: tuple[FlatStep, ...]
    output: str

    def by_id(self) -> dict[str, FlatStep]:
        """Map each step id to its step."""
        return {s.step_id: s for s in self.steps}

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # The store keeps every run's DAG as a blob. Pickled object by object, a big DAG
        # pays a Python-level reduce per step and per Ref, so each step becomes a plain
        # tuple and each Ref one shared marker, with the step ids the markers stand for
        # listed beside, in the order _refs_to_slots visits them. The rows are pickled
        # (and unpickled, in _flat_dag_blob) as one inner blob, so that both happen
        # inside fewer_gc_passes().
        big = len(self.steps) >= BIG_RUN_STEPS
        with fewer_gc_passes(big):
            return (_flat_dag_blob, (codec.dumps((self._rows(), self.output)), big))

    def _rows(self) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = []
        for step in self.steps:
            refs: list[str] = []
            fields = _step_fields(step)
            if step.upstream:
                fields = (
                    *fields[:_ARGS_AT],
                    _refs_to_slots(step.args, refs),
                    _refs_to_slots(dict(step.kwargs), refs),
                    *fields[_KWARGS_AT + 1 :],
                )
            rows.append((*fields, tuple(refs)))
        return rows


class _RefSlot:
    """Stands for a Ref inside a pickled FlatDag (see ``FlatDag.__reduce__``)."""

    def __reduce__(self) -> str:
        return "_REF_SLOT"


_REF_SLOT = _RefSlot()


def _refs_to_slots(value: object, refs: list[str]) -> object:
    # After flatten, only exact lists, tuples and dicts can hold Refs (see _to_refs).
    kind = type(value)
    if kind is Ref:
        refs.append(value.step_id)  # type: ignore[attr-defined]
        return _REF_SLOT
    if kind is list or kind is tuple:
        return kind([_refs_to_slots(v, refs) for v in value])  # type: ignore[attr-defined]
    if kind is dict:
        return {k: _refs_to_slots(v, refs) for k, v in value.items()}  # type: ignore[attr-defined]
    return value


def _slots_to_refs(value: object, refs: Iterator[str]) -> object:
    if value is _REF_SLOT:
        return Ref(next(refs))
    kind = type(value)
    if kind is list or kind is tuple:
        return kind([_slots_to_refs(v, refs) for v in value])  # type: ignore[attr-defined]
    if kind is dict:
        return {k: _slots_to_refs(v, refs) for k, v in value.items()}  # type: ignore[attr-defined]
    return value


def _flat_dag_blob(blob: bytes, big: bool) -> FlatDag:
    with fewer_gc_passes(big):
        rows, output = cast("tuple[list[tuple[Any, ...]], str]", codec.loads(blob))
        return _flat_dag(rows, output)


def flat_dag_from_rows(rows: list[tuple[Any, ...]], output: str) -> FlatDag:
    """The DAG of rows unpickled from a stored DAG's inner blob (``evkit.missing_code``)."""
    return _flat_dag(rows, output)


def _flat_dag(rows: list[tuple[Any, ...]], output: str) -> FlatDag:
    # Rows come from _rows() through pickle: their fields have FlatStep's types.
    steps = []
    for *fields, refs in rows:
        step = FlatStep(*fields)
        if refs:
            slots = iter(refs)
            step.args = _slots_to_refs(step.args, slots)  # type: ignore[assignment]
            step.kwargs = _slots_to_refs(step.kwargs, slots)  # type: ignore[assignment]
        steps.append(step)
    return FlatDag(steps=tuple(steps), output=output)


def flatten(root: StepNode, *, prefix: str = "") -> FlatDag:
    """Give every node reachable from ``root`` a unique id and order them topologically.

    Ids are the step names, made unique with ``_1``, ``_2``... in post-order (skipping a
    suffix that is already some step's id); inside a continuation of step ``s`` they start
    with ``s/``. The same node object used twice is one step. Iterative, so a chain of
    100,000 steps is fine.
    """
    with fewer_gc_passes():
        return _flatten(root, prefix)


def _flatten(root: StepNode, prefix: str) -> FlatDag:
    ids: dict[int, str] = {}
    used: dict[str, int] = {}
    order: list[FlatStep] = []
    stack: list[tuple[StepNode, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in ids:
            continue
        if not expanded:
            stack.append((node, True))
            for child in reversed(_child_nodes(node)):
                if id(child) not in ids:
                    stack.append((child, False))
            continue
        step_id = _unique(prefix + node.name, used)
        ids[id(node)] = step_id
        upstream: list[str] = []
        # Inline fast paths for the usual arguments (a node, or a plain value): a 100,000-
        # step DAG spends most of flatten() in per-argument calls otherwise.
        args = tuple(
            [
                Ref(_add(upstream, ids[id(a)]))
                if isinstance(a, StepNode)
                else a
                if type(a) in _ATOMS
                else _to_refs(a, ids, upstream)
                for a in node.args
            ]
        )
        kwargs = {k: _to_refs(v, ids, upstream) for k, v in node.kwargs.items()} if node.kwargs else {}
        event = node if isinstance(node, EventNode) else None
        order.append(
            FlatStep(
                step_id=step_id,
                name=node.name,
                kind=node.kind,
                func=None if event else node.func,
                listener=event.listener if event else None,
                args=args,
                kwargs=kwargs,
                options=node.options,
                upstream=tuple(dict.fromkeys(upstream)),
                timeout_seconds=event.timeout_seconds if event else None,
                default=event.default if event else NO_DEFAULT,
            )
        )
    return FlatDag(steps=tuple(order), output=ids[id(root)])


def _unique(name: str, used: dict[str, int]) -> str:
    # ``used`` counts each name asked for, and holds every id given out, so that a step
    # named "x_1" after two steps named "x" does not get the id of the second "x" (two
    # steps with one id would share one checkpoint).
    count = used.get(name, 0)
    step_id = name
    if count:
        step_id = f"{name}_{count}"
        while step_id in used:
            count += 1
            step_id = f"{name}_{count}"
    used[name] = count + 1
    used.setdefault(step_id, 1)
    return step_id


_ATOMS = frozenset({str, int, float, bool, bytes, type(None)})


def _add(items: list[str], item: str) -> str:
    items.append(item)
    return item


def _child_nodes(node: StepNode) -> list[StepNode]:
    found: list[StepNode] = []
    for value in node.args:  # the usual cases inline, as in flatten()
        if isinstance(value, StepNode):
            found.append(value)
        elif type(value) not in _ATOMS:
            _collect(value, found)
    if node.kwargs:
        _collect(tuple(node.kwargs.values()), found)
    return found


def _collect(value: object, found: list[StepNode]) -> None:
    if isinstance(value, StepNode):
        found.append(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, found)


def _to_refs(value: object, ids: dict[int, str], upstream: list[str]) -> object:
    if isinstance(value, StepNode):
        upstream.append(ids[id(value)])
        return Ref(ids[id(value)])
    if isinstance(value, list):
        return [_to_refs(v, ids, upstream) for v in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(_to_refs(v, ids, upstream) for v in value)
    if isinstance(value, dict):
        return {k: _to_refs(v, ids, upstream) for k, v in value.items()}
    return value


def resolve_refs(value: object, results: Mapping[str, object]) -> object:
    """Replace every :class:`Ref` in ``value`` by the result of its step."""
    if isinstance(value, Ref):
        return results[value.step_id]
    if type(value) in _ATOMS:  # the usual case, before the container checks
        return value
    if isinstance(value, list):
        return [resolve_refs(v, results) for v in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple([resolve_refs(v, results) for v in value])
    if isinstance(value, dict):
        return {k: resolve_refs(v, results) for k, v in value.items()}
    return value
