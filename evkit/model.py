"""Pure data: statuses, step options and the immutable snapshots the engine publishes.

Nothing here does I/O or knows about asyncio; widgets, the CLI and tests read these
records without touching the engine.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

R = TypeVar("R")


DEFAULT_STORAGE = "evkit.duckdb"
"""The store file ``workflow.init()`` and the ``evkit`` command use when none is given."""
MAX_WORKFLOW_ID_CHARS = 200
"""The longest run id a new run may have: it is a path segment of event URLs."""
MAX_EVENT_KEY_CHARS = 200
"""The longest key an HTTP event may have: it is a path segment of event URLs."""


class WorkflowStatus(str, enum.Enum):  # noqa: UP042 - Ray's WorkflowStatus was a str Enum
    """The status of a run, as Ray Workflows named them, plus WAITING.

    RUNNING: a live scheduler runs it. WAITING: running, and every runnable step waits on
    an event. SUCCESSFUL, FAILED, CANCELED: finished. RESUMABLE: the store says it was
    running but no live scheduler in this process owns it (a crash or a restarted kernel).
    """

    RUNNING = "RUNNING"
    WAITING = "WAITING"
    SUCCESSFUL = "SUCCESSFUL"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    RESUMABLE = "RESUMABLE"

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        """True for SUCCESSFUL, FAILED and CANCELED."""
        return self in _FINAL


_FINAL = frozenset({WorkflowStatus.SUCCESSFUL, WorkflowStatus.FAILED, WorkflowStatus.CANCELED})

StepKind = Literal["function", "event"]

# What a step is doing, as the widgets colour it. Event steps move through
# waiting -> received -> checkpointed -> committed; function steps through running -> done.
StepState = Literal[
    "pending",
    "running",
    "waiting",
    "received",
    "checkpointed",
    "committed",
    "done",
    "failed",
    "cancelled",
]

# The states an event goes through; each change is a row in the store's event log.
EventState = Literal["waiting", "received", "checkpointed", "committed", "cancelled", "failed"]

STEP_STATES: tuple[StepState, ...] = typing.get_args(StepState)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepOptions:
    """Options of one step, set with ``@workflow.step(...)`` or ``node.options(...)``.

    Attributes:
        name: The step's name; its id in the run is derived from it.
        max_retries: Extra attempts after a failure that may heal by itself (a lost
            worker), and after any exception when ``retry_exceptions`` allows it.
        retry_exceptions: ``True`` retries every exception, a tuple of types only those.
        retry_backoff_seconds: Delay before the first retry; doubled on each next one.
        catch_exceptions: Return ``(result, None)`` or ``(None, error)`` instead of failing.
        metadata: JSON-serializable data stored with the step.
        resources: Resource hints for cluster executors (``{"CPU": 2, "memory": 1e9}``).
        executor: Name of the executor this step runs on (``None``: the run's default).
    """

    name: str | None = None
    max_retries: int = 3
    retry_exceptions: bool | tuple[type[BaseException], ...] = False
    retry_backoff_seconds: float = 0.1
    catch_exceptions: bool = False
    metadata: Mapping[str, object] = field(default_factory=dict)
    resources: Mapping[str, float] = field(default_factory=dict)
    executor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepSnapshot:
    """One step of a run at one moment.

    Attributes:
        step_id: Unique in the run (``name``, ``name_1``, ...; ``parent/child`` inside a
            dynamic continuation).
        name: The step's name.
        kind: ``"function"`` or ``"event"``.
        state: What the step is doing (see ``StepState``).
        upstream: Ids of the steps whose results this step takes.
        attempts: How many times the step body (or the poll) started.
        listener: The listener class name, for event steps.
        args_text: A readable form of the listener's arguments, for event steps.
        state_times: When each state was entered.
        deadline: A timer's absolute deadline, if it has one.
        timeout_at: When the wait times out, if it has ``timeout_seconds``.
        error: A one-line description of the failure, if the step failed.
        inbox_key: For an event step waiting on the inbox (``ManualListener`` and its
            subclasses): the ``key`` that ``workflow.send_event`` delivers to.
        reused: True when a re-run (``node.run(workflow_id=ID)`` on a stored run) took
            the step's checkpoint as it was instead of running it.
        label: For an event step, what identifies it to the user: its ``name=``, else
            what its listener says of the wait once it starts (a key, a stream), else
            ``None``, and then views show its ``deadline`` as a local time if it has one
            (a timer), else its id (see :func:`step_label`).
    """

    step_id: str
    name: str
    kind: StepKind
    state: StepState
    upstream: tuple[str, ...] = ()
    attempts: int = 0
    listener: str | None = None
    args_text: str | None = None
    state_times: Mapping[str, dt.datetime] = field(default_factory=dict)
    deadline: dt.datetime | None = None
    timeout_at: dt.datetime | None = None
    error: str | None = None
    inbox_key: str | None = None
    label: str | None = None
    reused: bool = False


StepLabel = str | dt.datetime
"""What a view writes for a step instead of its id: text the user wrote (a ``name=``, a
key, a stream), or a time (a timer's deadline) that the view shows in its own time zone."""


def step_label(step: StepSnapshot) -> StepLabel | None:
    """The label views show for ``step``: its ``label``, else its deadline, else ``None``."""
    if step.label is not None:
        return step.label
    return step.deadline if step.kind == "event" else None


def record_maker(cls: type[R]) -> Callable[..., R]:
    """A fast positional constructor for the frozen, slotted dataclass ``cls``.

    ``make(*values)`` takes every field, in declaration order (defaults are not applied).
    A frozen ``__init__`` sets each field through a Python-level ``object.__setattr__``
    call; filling the slots directly skips those calls. For the records the engine makes
    per step or per event (snapshots, contexts), where that cost grows with the run.
    """
    # Each slot's own setter (found through the MRO, for inherited fields too) fills it
    # without the frozen class's __setattr__.
    setters = tuple(getattr(cls, f.name).__set__ for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    new = object.__new__

    def make(*values: object) -> R:
        record = new(cls)
        for set_field, value in zip(setters, values, strict=True):
            set_field(record, value)
        return record

    make.__name__ = f"make_{cls.__name__}"
    return make


make_step_snapshot = record_maker(StepSnapshot)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSnapshot:
    """An immutable picture of a run, published by the engine on every change.

    Attributes:
        workflow_id: The run's id.
        status: The run's status.
        steps: Every step known so far, in topological order (dynamic steps appear when
            they are created).
        version: Grows by one with every published change.
        waiting_on: Ids of the event steps the run waits on, when it is WAITING.
        started_at: When the run started (or resumed).
        ended_at: When it ended, if it has.
        error: A one-line description of the failure, if the run failed.
    """

    workflow_id: str
    status: WorkflowStatus
    steps: tuple[StepSnapshot, ...]
    version: int = 0
    waiting_on: tuple[str, ...] = ()
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    error: str | None = None

    def step(self, step_id: str) -> StepSnapshot:
        """Return the step with this id.

        Raises:
            KeyError: No step has this id; the message lists the known ones.
        """
        for step in self.steps:
            if step.step_id == step_id:
                return step
        known = ", ".join(repr(s.step_id) for s in self.steps)
        raise KeyError(f"Run {self.workflow_id!r} has no step {step_id!r}. Known steps: {known}.")

    def summary(self) -> str:
        """A short, deterministic text: status and each step's state (no times, no ids)."""
        lines = [f"status: {self.status.value}"]
        lines += [f"  {s.step_id} [{s.kind}]: {s.state}" for s in self.steps]
        return "\n".join(lines)


EVENT_PAGE_SIZE = 50
"""Event steps a :class:`RunProgress` describes in full unless asked for another count."""

StepShape = tuple[str, StepKind, tuple[str, ...]]
"""``(step_id, kind, upstream ids)``: what drawing a step needs."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunProgress:
    """What a live view of a run needs, at a cost that does not grow with the run's events.

    A :class:`RunSnapshot` carries a full record per step; a view of a run with thousands
    of waits shows every step's state but the details of one page of event steps only.
    ``RunHandle.progress`` builds one from the engine's own bookkeeping, with records for
    one page of event steps only, so its cost follows the page, not the run.

    Attributes:
        workflow_id: The run's id.
        status: The run's status.
        version: Grows by one with every published change (as ``RunSnapshot.version``).
        shapes: Every step known so far as ``(step_id, kind, upstream)``, in topological
            order. The same tuple object while no step is added, so a view can tell by
            identity whether it must redraw the DAG.
        states: ``step_id -> state`` for every step, in the same order.
        events: Full records of the event steps ``event_offset`` .. ``event_offset +
            len(events) - 1`` (counting event steps only, in step order).
        event_offset: Index of ``events[0]`` among the run's event steps.
        event_total: How many event steps the run has.
        started_at: When the run started (or resumed).
        error: A one-line description of the failure, if the run failed.
        labels: ``step_id -> label`` (see :func:`step_label`) of the steps that have one,
            for the text of their nodes. The same object while no label changes.
        reused: The steps whose checkpoint a re-run reused (empty for a first run or a resume).
    """

    workflow_id: str
    status: WorkflowStatus
    version: int
    shapes: tuple[StepShape, ...]
    states: Mapping[str, StepState]
    events: tuple[StepSnapshot, ...]
    event_offset: int
    event_total: int
    started_at: dt.datetime | None = None
    error: str | None = None
    labels: Mapping[str, StepLabel] = field(default_factory=dict)
    reused: frozenset[str] = frozenset()

    @classmethod
    def of_snapshot(
        cls, snapshot: RunSnapshot, *, event_offset: int = 0, event_limit: int = EVENT_PAGE_SIZE
    ) -> RunProgress:
        """The progress a snapshot shows, with one page of its event steps.

        Args:
            snapshot: The run.
            event_offset: Index of the first event step wanted (clamped to the last page).
            event_limit: How many event steps at most.
        """
        events = [s for s in snapshot.steps if s.kind == "event"]
        offset = clamp_offset(event_offset, len(events), event_limit)
        return cls(
            workflow_id=snapshot.workflow_id,
            status=snapshot.status,
            version=snapshot.version,
            shapes=tuple((s.step_id, s.kind, s.upstream) for s in snapshot.steps),
            states={s.step_id: s.state for s in snapshot.steps},
            events=tuple(events[offset : offset + event_limit]),
            event_offset=offset,
            event_total=len(events),
            started_at=snapshot.started_at,
            error=snapshot.error,
            labels={s.step_id: label for s in snapshot.steps if (label := step_label(s)) is not None},
            reused=frozenset(s.step_id for s in snapshot.steps if s.reused),
        )


def clamp_offset(offset: int, total: int, limit: int) -> int:
    """``offset`` moved into ``0 .. total - 1`` onto a multiple of ``limit`` (a page start)."""
    if limit <= 0 or total <= 0:
        return 0
    last_page = (total - 1) // limit * limit
    return min(max(0, offset) // limit * limit, last_page)
