"""What a run looks like while it executes: each step's state and times, snapshots, subscribers.

The :class:`RunTracker` is the one place that changes a step's state. The scheduler and the
step runners tell it what happened; widgets and handles read the immutable records it
makes (:meth:`RunTracker.snapshot`, :meth:`RunTracker.progress`). It writes nothing to
the store and starts nothing.
"""

from __future__ import annotations

import array
import asyncio
import dataclasses
import datetime as dt
import math
import time
from collections.abc import Callable, Mapping

from evkit.dag import FlatDag, FlatStep
from evkit.model import (
    EVENT_PAGE_SIZE,
    STEP_STATES,
    RunProgress,
    RunSnapshot,
    StepLabel,
    StepShape,
    StepSnapshot,
    StepState,
    WorkflowStatus,
    clamp_offset,
    make_step_snapshot,
)
from evkit.store.reads import StoredEvent


@dataclasses.dataclass(slots=True)
class StepView:
    """Mutable per-step bookkeeping behind the immutable snapshots."""

    index: int  # the step's place in the run's order: its slot in StateTimes
    state: StepState = "pending"
    attempts: int = 0
    deadline: float | None = None
    timeout_at: float | None = None
    args_text: str | None = None
    error: str | None = None
    inbox_key: str | None = None
    label: str | None = None  # what the listener says of the wait (describe_wait)


class StateTimes:
    """When each step last entered each state: one array of floats per state, NaN if never.

    A big run keeps hundreds of thousands of steps; flat arrays hold their times without
    a dict and a float object per entry.
    """

    __slots__ = ("arrays",)

    def __init__(self) -> None:
        self.arrays: dict[str, array.array[float]] = {state: array.array("d") for state in STEP_STATES}

    def grow(self, count: int) -> None:
        """Make room for ``count`` more steps."""
        unset = array.array("d", [math.nan]) * count
        for times in self.arrays.values():
            times.extend(unset)

    def of(self, index: int) -> dict[str, dt.datetime]:
        """The step's times, in the states' order."""
        return {
            state: as_datetime(when)
            for state, times in self.arrays.items()
            if (when := times[index]) == when  # NaN: never entered
        }


class RunTracker:
    """The live state of one run's steps, and the records published from it.

    Args:
        workflow_id: The run's id.
        prior_attempts: Attempts the store already counts per step (on resume).
    """

    def __init__(self, workflow_id: str, prior_attempts: Mapping[str, int]) -> None:
        self.workflow_id = workflow_id
        self.steps: dict[str, FlatStep] = {}
        self.order: list[str] = []
        self.views: dict[str, StepView] = {}
        self.consumers: dict[str, int] = {}  # how many steps take each step's result
        self.status = WorkflowStatus.RUNNING  # RUNNING until the run ends
        self.error: str | None = None
        self.busy = 0  # function steps running + events between receipt and commit
        self.waiting = 0  # event steps polling
        self._prior_attempts = prior_attempts
        self.reused: frozenset[str] = frozenset()  # set by a re-run: see StepSnapshot.reused
        self._started_at = time.time()
        self._ended_at: float | None = None
        self._version = 0
        self._subscribers: list[Callable[[], None]] = []
        self._snapshots: dict[str, StepSnapshot] = {}  # see step_snapshot()
        self._times = StateTimes()
        self._shapes: tuple[tuple[StepShape, ...], list[str]] | None = None  # see progress()
        # The labels of the steps that have one; progress() hands out a copy, made again
        # only after a label changed, so a view can tell by identity that none did.
        self._labels: dict[str, StepLabel] = {}
        self._labels_shown: dict[str, StepLabel] | None = None
        self._notify_scheduled = False

    # ------------------------------------------------------------------ changes

    def add_steps(
        self, dag: FlatDag, results: Mapping[str, bytes], events: Mapping[str, StoredEvent]
    ) -> None:
        """Track the steps of ``dag`` (a run's, or a continuation's), in their stored states."""
        self._shapes = None
        self._times.grow(len(dag.steps))
        for step in dag.steps:
            for up in step.upstream:
                self.consumers[up] = self.consumers.get(up, 0) + 1
            self.steps[step.step_id] = step
            view = StepView(len(self.order), attempts=self._prior_attempts.get(step.step_id, 0))
            self.order.append(step.step_id)
            self.views[step.step_id] = view
            if step.kind == "event" and step.options.name is not None:
                self._labels[step.step_id] = step.options.name
                self._labels_shown = None
            if step.step_id in results:
                view.state = "committed" if step.kind == "event" else "done"
            elif (stored := events.get(step.step_id)) is not None:
                view.attempts = stored.poll_attempts
                if stored.committed:
                    view.state = "committed"
                elif stored.checkpointed:
                    view.state = "checkpointed"

    def set_state(self, step_id: str, state: StepState) -> None:
        """Record that the step entered ``state`` now."""
        view = self.views[step_id]
        view.state = state
        self._times.arrays[state][view.index] = time.time()
        self._snapshots.pop(step_id, None)
        self.changed()

    def label_changed(self, step_id: str) -> None:
        """Take the step's label anew from its view (after its wait was described)."""
        self._snapshots.pop(step_id, None)
        label = self._label_of(self.steps[step_id], self.views[step_id])
        if label == self._labels.get(step_id):
            return  # the usual case on a retry or for listeners that say nothing: no copy
        if label is None:
            del self._labels[step_id]
        else:
            self._labels[step_id] = label
        self._labels_shown = None

    def finish(self, status: WorkflowStatus, *, error: str | None = None) -> None:
        """Record the run's final status."""
        self.status = status
        self.error = error
        self._ended_at = time.time()
        self.changed()

    def changed(self) -> None:
        """Count a change and let the subscribers know (once per loop iteration)."""
        self._version += 1
        if self._subscribers and not self._notify_scheduled:
            self._notify_scheduled = True
            asyncio.get_running_loop().call_soon(self._notify)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (on this loop, coalesced) after changes; returns an unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def _notify(self) -> None:
        self._notify_scheduled = False
        for callback in list(self._subscribers):
            callback()

    # ------------------------------------------------------------------ reading

    @property
    def live_status(self) -> WorkflowStatus:
        """RUNNING, WAITING (every runnable step waits on an event), or the final status."""
        if self.status is WorkflowStatus.RUNNING and self.busy == 0 and self.waiting > 0:
            return WorkflowStatus.WAITING
        return self.status

    def snapshot(self) -> RunSnapshot:
        """An immutable picture of the run now (cheap enough for a widget's refresh rate)."""
        steps = []
        waiting_on = []
        for step_id in self.order:
            record = self.step_snapshot(step_id)
            if record.state == "waiting":
                waiting_on.append(step_id)
            steps.append(record)
        status = self.live_status
        return RunSnapshot(
            workflow_id=self.workflow_id,
            status=status,
            steps=tuple(steps),
            version=self._version,
            waiting_on=tuple(waiting_on) if status is WorkflowStatus.WAITING else (),
            started_at=as_datetime(self._started_at),
            ended_at=as_datetime(self._ended_at) if self._ended_at is not None else None,
            error=self.error,
        )

    def progress(self, *, event_offset: int = 0, event_limit: int = EVENT_PAGE_SIZE) -> RunProgress:
        """Every step's state and one page of event records (see ``RunProgress``).

        What a live view reads several times a second: no per-step record is made except
        for the page's event steps.
        """
        if self._shapes is None:  # dropped when steps are added
            steps = self.steps
            shapes = tuple((s.step_id, s.kind, s.upstream) for s in map(steps.__getitem__, self.order))
            self._shapes = shapes, [shape[0] for shape in shapes if shape[1] == "event"]
        shapes, event_ids = self._shapes
        views = self.views
        offset = clamp_offset(event_offset, len(event_ids), event_limit)
        page = [self.step_snapshot(step_id) for step_id in event_ids[offset : offset + event_limit]]
        return RunProgress(
            workflow_id=self.workflow_id,
            status=self.live_status,
            version=self._version,
            shapes=shapes,
            states={step_id: views[step_id].state for step_id in self.order},
            events=tuple(page),
            event_offset=offset,
            event_total=len(event_ids),
            started_at=as_datetime(self._started_at),
            error=self.error,
            labels=self._shown_labels(),
            reused=self.reused,
        )

    def _shown_labels(self) -> dict[str, StepLabel]:
        if self._labels_shown is None:
            self._labels_shown = dict(self._labels)
        return self._labels_shown

    @staticmethod
    def _label_of(step: FlatStep, view: StepView) -> StepLabel | None:
        # A name the user gave wins over what the listener says; a timer says its deadline.
        if step.kind != "event":
            return None
        if step.options.name is not None or view.label is not None:
            return step.options.name or view.label
        return as_datetime(view.deadline) if view.deadline is not None else None

    def step_snapshot(self, step_id: str) -> StepSnapshot:
        """The step's record, reused until its view changes (``set_state`` drops it).

        Reuse is what lets a widget read a run of thousands of steps often: it pays for
        the steps that changed only.
        """
        record = self._snapshots.get(step_id)
        if record is not None:
            return record
        step, view = self.steps[step_id], self.views[step_id]
        record = self._snapshots[step_id] = make_step_snapshot(  # in StepSnapshot's field order
            step_id,
            step.name,
            step.kind,
            view.state,
            step.upstream,
            view.attempts,
            step.listener.__name__ if step.listener else None,
            view.args_text,
            self._times.of(view.index),
            as_datetime(view.deadline) if view.deadline is not None else None,
            as_datetime(view.timeout_at) if view.timeout_at is not None else None,
            view.error,
            view.inbox_key,
            (step.options.name or view.label) if step.kind == "event" else None,
            step_id in self.reused,
        )
        return record


def as_datetime(timestamp: float) -> dt.datetime:
    """An aware UTC datetime for epoch seconds."""
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
