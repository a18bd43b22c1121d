"""One run of a workflow on the event loop: step tasks, the event contract, snapshots.

A :class:`RunExecution` turns a :class:`~evkit.dag.FlatDag` into one asyncio task per step,
each awaiting its upstream tasks. Checkpointed results are taken from the store instead of
running again. It writes through the store's :class:`~evkit.store.WriteQueue` and never
blocks the loop. The engine (``evkit.engine``) creates, registers and cancels executions.
"""

from __future__ import annotations

import array
import asyncio
import dataclasses
import datetime as dt
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, cast

from evkit import codec
from evkit.context import EventContext, StepContext, set_context
from evkit.dag import NO_DEFAULT, FlatDag, FlatStep, Ref, StepNode, fewer_gc_passes, flatten, resolve_refs
from evkit.errors import (
    EventTimeoutError,
    StepFailedError,
    WorkerLostError,
    WorkflowCancellationError,
    WorkflowExecutionError,
)
from evkit.executors.base import StepCall
from evkit.listeners.base import EventListener, TimerListener
from evkit.listeners.manual import Inbox, ManualListener
from evkit.model import (
    EVENT_PAGE_SIZE,
    STEP_STATES,
    RunProgress,
    RunSnapshot,
    StepShape,
    StepSnapshot,
    StepState,
    WorkflowStatus,
    clamp_offset,
    make_step_snapshot,
    record_maker,
)
from evkit.store import now, run_status_row
from evkit.store.reads import StoredEvent, StoredRun

if TYPE_CHECKING:
    from evkit.clock import Clock
    from evkit.executors.base import StepExecutor
    from evkit.store import WriteQueue

logger = logging.getLogger("evkit")

# While a run of at least this many steps executes, the cyclic GC runs less often (see
# evkit.dag.fewer_gc_passes): its full passes took ~40% of a 100,000-wait run.
_BIG_RUN_STEPS = 5_000
# Per step and per event: made with the fast positional constructors (field order).
_make_step_context = record_maker(StepContext)
_make_event_context = record_maker(EventContext)
_make_step_call = record_maker(StepCall)
# Arguments passed as they are (containers are copied by resolve_refs, as a body may mutate them).
_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})


# The source_id of a checkpoint that holds a wait's `default` after its timeout: nothing
# came from the source, so there is nothing for event_checkpointed to commit.
TIMEOUT_DEFAULT_SOURCE = "evkit:timeout-default"


class _TimedOut(Exception):
    """The wait's own ``timeout_seconds`` passed (not a TimeoutError from the listener)."""


# What user code may raise that is not a failure of its step: the task's own cancellation,
# and the close of a coroutine. Anything else a body or listener raises, BaseExceptions
# such as SystemExit and KeyboardInterrupt included, fails its step: raised out of a task,
# SystemExit and KeyboardInterrupt would stop the engine's loop (asyncio re-raises them
# from the task into run_forever) and leave every other run hanging.
_NOT_A_FAILURE = (asyncio.CancelledError, GeneratorExit)


@dataclasses.dataclass(slots=True)
class _StepView:
    """Mutable per-step bookkeeping behind the immutable snapshots."""

    index: int  # the step's place in the run's order: its slot in _StateTimes
    state: StepState = "pending"
    attempts: int = 0
    deadline: float | None = None
    timeout_at: float | None = None
    args_text: str | None = None
    error: str | None = None
    inbox_key: str | None = None


class _StateTimes:
    """When each step last entered each state: one array of floats per state, NaN if never.

    A dict per step cost ~230 bytes plus a float object per entry: ~60 MB for the
    200,000 steps of a 100,000-wait run, against ~14 MB here.
    """

    __slots__ = ("arrays",)

    def __init__(self) -> None:
        # state -> times; set one with arrays[state][index] = when (_set_state does, inline)
        self.arrays: dict[str, array.array[float]] = {state: array.array("d") for state in STEP_STATES}

    def grow(self, count: int) -> None:
        """Make room for ``count`` more steps."""
        unset = array.array("d", [math.nan]) * count
        for times in self.arrays.values():
            times.extend(unset)

    def of(self, index: int) -> dict[str, dt.datetime]:
        """The step's times, in the states' order."""
        return {
            state: _datetime(when) for state, times in self.arrays.items() if (when := times[index]) == when
        }


class RunExecution:
    """Executes one run on the loop it was created on.

    Args:
        workflow_id: The run's id.
        dag: The flat DAG (from the caller for a new run, from the store on resume).
        stored: What the store already has for this run (``None`` for a new run).
        queue: The store's write queue (on this loop).
        clock: The runtime's clock.
        executors: Executors by name; ``default_executor`` names the one steps use.
        services: Passed to listeners in their ``EventContext``.
    """

    def __init__(
        self,
        *,
        workflow_id: str,
        dag: FlatDag,
        stored: StoredRun | None,
        queue: WriteQueue,
        clock: Clock,
        executors: Mapping[str, StepExecutor],
        default_executor: str,
        services: Mapping[str, object],
    ) -> None:
        self.workflow_id = workflow_id
        self.dag = dag
        self._queue = queue
        self._clock = clock
        self._executors = executors
        self._default_executor = default_executor
        self._services = services
        inbox = services.get("inbox")
        self._inbox = inbox if isinstance(inbox, Inbox) else None
        self._steps: dict[str, FlatStep] = {}
        self._order: list[str] = []
        self._views: dict[str, _StepView] = {}
        self._tasks: dict[str, asyncio.Task[object]] = {}
        self._consumers: dict[str, int] = {}  # steps taking each step's result
        self._is_async: dict[Callable[..., object], bool] = {}
        self._results: dict[str, bytes] = dict(stored.results) if stored else {}
        self._continuations: dict[str, bytes] = dict(stored.continuations) if stored else {}
        self._prior_attempts: dict[str, int] = dict(stored.attempts) if stored else {}
        self._events: dict[str, StoredEvent] = dict(stored.events) if stored else {}
        self._status = WorkflowStatus.RUNNING
        self._error: str | None = None
        self._started_at = time.time()
        self._ended_at: float | None = None
        self._version = 0
        self._busy = 0  # function steps running + events between receipt and commit
        self._waiting = 0  # event steps polling
        self._subscribers: list[Callable[[], None]] = []
        self._snapshots: dict[str, StepSnapshot] = {}  # see snapshot()
        self._times = _StateTimes()
        self._shapes: tuple[tuple[StepShape, ...], list[str]] | None = None  # see progress()
        self._notify_scheduled = False
        self.abandoned = False  # set by the engine on shutdown: record nothing more
        self.cancel_requested = False  # set by the engine's cancel(): record CANCELED
        with fewer_gc_passes(len(dag.steps) >= _BIG_RUN_STEPS):  # ~10 objects per step, all kept
            self._add_steps(dag)

    # ------------------------------------------------------------------ public state

    @property
    def status(self) -> WorkflowStatus:
        """RUNNING, WAITING, or the final status once the run ended."""
        if self._status is WorkflowStatus.RUNNING and self._busy == 0 and self._waiting > 0:
            return WorkflowStatus.WAITING
        return self._status

    def snapshot(self) -> RunSnapshot:
        """An immutable picture of the run now (cheap enough to call ~10 times a second)."""
        steps = []
        waiting_on = []
        # Steps whose view did not change since the last snapshot reuse their record (a
        # view changes only together with _set_state, which drops it from the cache), so
        # a widget reading a 2,000-step run 10 times a second pays for the changes only.
        for step_id in self._order:
            record = self._step_snapshot(step_id)
            if record.state == "waiting":
                waiting_on.append(step_id)
            steps.append(record)
        status = self.status
        return RunSnapshot(
            workflow_id=self.workflow_id,
            status=status,
            steps=tuple(steps),
            version=self._version,
            waiting_on=tuple(waiting_on) if status is WorkflowStatus.WAITING else (),
            started_at=_datetime(self._started_at),
            ended_at=_datetime(self._ended_at) if self._ended_at is not None else None,
            error=self._error,
        )

    def progress(self, *, event_offset: int = 0, event_limit: int = EVENT_PAGE_SIZE) -> RunProgress:
        """Every step's state and one page of event records (see ``RunProgress``).

        What a live view reads ~10 times a second: no per-step record is made except for
        the page's event steps.
        """
        if self._shapes is None:  # dropped when steps are added
            steps = self._steps
            shapes = tuple((s.step_id, s.kind, s.upstream) for s in map(steps.__getitem__, self._order))
            self._shapes = shapes, [shape[0] for shape in shapes if shape[1] == "event"]
        shapes, event_ids = self._shapes
        views = self._views
        offset = clamp_offset(event_offset, len(event_ids), event_limit)
        page = [self._step_snapshot(step_id) for step_id in event_ids[offset : offset + event_limit]]
        return RunProgress(
            workflow_id=self.workflow_id,
            status=self.status,
            version=self._version,
            shapes=shapes,
            states={step_id: views[step_id].state for step_id in self._order},
            events=tuple(page),
            event_offset=offset,
            event_total=len(event_ids),
            started_at=_datetime(self._started_at),
            error=self._error,
        )

    def _step_snapshot(self, step_id: str) -> StepSnapshot:
        """The step's record, reused until its view changes (_set_state drops it)."""
        record = self._snapshots.get(step_id)
        if record is not None:
            return record
        step, view = self._steps[step_id], self._views[step_id]
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
            _datetime(view.deadline) if view.deadline is not None else None,
            _datetime(view.timeout_at) if view.timeout_at is not None else None,
            view.error,
            view.inbox_key,
        )
        return record

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (on this loop, coalesced) after changes; returns an unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    # ------------------------------------------------------------------ running

    async def execute(self) -> object:
        """Run to the end; return the output (checkpointed) or raise.

        Every way out cancels and awaits the run's other step tasks (so none polls or
        commits after the run ended) and records the run's final status, unless the
        engine abandoned the run (shutdown: it stays RUNNING, so RESUMABLE later).

        Raises:
            WorkflowExecutionError: A step failed (``__cause__`` is its error).
            WorkflowCancellationError: The run was cancelled.
        """
        try:
            with fewer_gc_passes(len(self._steps) >= _BIG_RUN_STEPS):
                output = await self._task_for(self.dag.output)
        except asyncio.CancelledError:
            await self._cancel_steps()
            if self.abandoned or not self.cancel_requested:
                raise
            self._finish(WorkflowStatus.CANCELED)
            await self._queue.append("run_status_log", run_status_row(self.workflow_id, "CANCELED"))
            raise WorkflowCancellationError(
                f"Run {self.workflow_id!r} was cancelled.", workflow_id=self.workflow_id
            ) from None
        except BaseException as exc:  # see _NOT_A_FAILURE: a BaseException fails the run too
            if isinstance(exc, GeneratorExit):
                raise
            await self._cancel_steps()
            error = (
                exc
                if isinstance(exc, WorkflowExecutionError)
                else StepFailedError(
                    f"Run {self.workflow_id!r} failed: {exc!r}", workflow_id=self.workflow_id
                )
            )
            if error is not exc:
                error.__cause__ = exc
            self._error = _one_line(error)
            self._finish(WorkflowStatus.FAILED)
            await self._queue.append(
                "run_status_log",
                # pickle drops __cause__: store the step's own exception, the useful one
                run_status_row(
                    self.workflow_id, "FAILED", error=(_blob_or_none(error.__cause__ or error), self._error)
                ),
            )
            raise error from error.__cause__
        self._finish(WorkflowStatus.SUCCESSFUL)
        await self._queue.append(
            "run_status_log",
            run_status_row(
                self.workflow_id, "SUCCESSFUL", output=(codec.dumps(output), codec.readable(output))
            ),
        )
        return output

    @property
    def finishing(self) -> bool:
        """True once the run's outcome is decided: its output step ended, or it has a final status.

        The engine's ``cancel`` leaves such a run alone: the run ends as it would have,
        and the store, its handle and ``cancel`` all say so.
        """
        if self._status.is_final:
            return True
        output = self._tasks.get(self.dag.output)
        return output is not None and output.done() and not output.cancelled()

    def _finish(self, status: WorkflowStatus) -> None:
        self._status = status
        self._ended_at = time.time()
        self._changed()

    async def _cancel_steps(self) -> None:
        pending = [task for task in self._tasks.values() if not task.done()]
        for task in pending:
            task.cancel()
        # Await them all so listener cleanup hooks run and no exception goes unretrieved.
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _add_steps(self, dag: FlatDag) -> None:
        self._shapes = None
        self._times.grow(len(dag.steps))
        for step in dag.steps:
            for up in step.upstream:
                self._consumers[up] = self._consumers.get(up, 0) + 1
            self._steps[step.step_id] = step
            view = _StepView(len(self._order), attempts=self._prior_attempts.get(step.step_id, 0))
            self._order.append(step.step_id)
            self._views[step.step_id] = view
            if step.step_id in self._results:
                view.state = "committed" if step.kind == "event" else "done"
            elif (stored := self._events.get(step.step_id)) is not None:
                view.attempts = stored.poll_attempts
                if stored.committed:
                    view.state = "committed"
                elif stored.checkpointed:
                    view.state = "checkpointed"

    def _task_for(self, step_id: str) -> asyncio.Task[object]:
        task = self._tasks.get(step_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._run_step(step_id), name=f"evkit:{self.workflow_id}:{step_id}"
            )
            self._tasks[step_id] = task
        return task

    async def _run_step(self, step_id: str) -> object:
        step = self._steps[step_id]
        try:
            if not step.upstream or step_id in self._results or self._stored_checkpoint(step_id):
                return await self._start(step, {})
            if len(step.upstream) == 1:  # a chain: skip gather's extra future and callbacks
                up = step.upstream[0]
                if self._consumers.get(up) == 1 and not self._steps[up].upstream and up not in self._tasks:
                    # We are the only consumer of a source step (a wait, say): run it inside
                    # our task instead of a task of its own. That is a task and a wake-up less
                    # per wait of a fan-in, and ~15% of the memory of a 100,000-wait run.
                    # (Sources only, so inlining never nests deeper than one level.) It is
                    # registered under our task, so cancelling the run still reaches it.
                    self._tasks[up] = self._tasks[step_id]
                    values = [await self._start(self._steps[up], {})]
                else:
                    values = [await self._task_for(up)]
            else:
                values = await asyncio.gather(*[self._task_for(u) for u in step.upstream])
            return await self._start(step, dict(zip(step.upstream, values, strict=True)))
        except (Exception, *_NOT_A_FAILURE):
            raise
        except BaseException as exc:
            # A BaseException from user code that the step's own handlers do not catch (a
            # listener's source_id, a value's __reduce__): it fails the step, not the loop.
            raise StepFailedError(
                f"Step {step_id!r} of run {self.workflow_id!r} raised {exc!r}. A "
                f"{type(exc).__name__} raised inside a step fails its run; the engine and "
                "other runs go on.",
                workflow_id=self.workflow_id,
                step=step_id,
            ) from exc

    def _stored_checkpoint(self, step_id: str) -> bool:
        stored = self._events.get(step_id)
        return stored is not None and stored.checkpointed

    def _start(self, step: FlatStep, results: dict[str, object]) -> Awaitable[object]:
        """What runs ``step`` once its upstream ``results`` are in (body, wait or stored result).

        A plain function, not a coroutine: awaited by the step's own task, it adds no
        coroutine of its own (~350 bytes a wait in a 100,000-wait run).
        """
        if step.step_id in self._results:
            done = asyncio.get_running_loop().create_future()
            done.set_result(codec.loads(self._results[step.step_id]))
            return done
        stored_event = self._events.get(step.step_id)
        if stored_event is not None and stored_event.checkpointed:
            return self._finish_stored_event(step, stored_event)
        # Refs sit in a step's own arguments, usually: resolve those inline (two generic
        # resolve_refs calls per step were ~5% of a 100,000-wait run).
        args = tuple(
            [
                results[a.step_id] if type(a) is Ref else a if type(a) in _PLAIN else resolve_refs(a, results)
                for a in step.args
            ]
        )
        kwargs = resolve_refs(dict(step.kwargs), results) if step.kwargs else {}
        assert isinstance(kwargs, dict)
        if step.kind == "event":
            return self._run_event(step, args, kwargs, stored_event)
        return self._run_function(step, args, kwargs)

    # ------------------------------------------------------------------ function steps

    async def _run_function(
        self, step: FlatStep, args: tuple[object, ...], kwargs: dict[str, object]
    ) -> object:
        options = step.options
        view = self._views[step.step_id]
        if step.step_id in self._continuations:
            sub = codec.loads(self._continuations[step.step_id])
            assert isinstance(sub, FlatDag)
            value = await self._run_continuation(step, sub)
            return self._record_success(step, value, view.attempts)
        while True:
            view.attempts += 1
            attempt = view.attempts
            self._log_step(step, "running", attempt)
            self._set_state(step.step_id, "running")
            self._busy += 1
            try:
                value = await self._call(step, args, kwargs, attempt)
            except asyncio.CancelledError:
                self._busy -= 1
                if not self.abandoned:
                    self._log_step(step, "cancelled", attempt)
                self._set_state(step.step_id, "cancelled")
                raise
            except BaseException as exc:  # not only Exception: see _NOT_A_FAILURE
                self._busy -= 1
                if isinstance(exc, GeneratorExit):
                    raise
                view.error = _one_line(exc)
                self._log_step(step, "failed", attempt, error=view.error)
                # A SystemExit or KeyboardInterrupt fails the step at once: not retried, not caught.
                failure = exc if isinstance(exc, Exception) else None
                if (
                    failure is not None
                    and attempt <= options.max_retries
                    and _retryable(failure, options.retry_exceptions)
                ):
                    self._set_state(step.step_id, "pending")
                    await self._clock.sleep_until(
                        self._clock.now() + options.retry_backoff_seconds * 2 ** (attempt - 1)
                    )
                    continue
                self._set_state(step.step_id, "failed")
                if failure is not None and options.catch_exceptions:
                    return self._record_success(step, (None, failure), attempt)
                raise StepFailedError(
                    f"Step {step.step_id!r} of run {self.workflow_id!r} failed after {attempt} "
                    f"attempt(s): {exc!r}",
                    workflow_id=self.workflow_id,
                    step=step.step_id,
                ) from exc
            self._busy -= 1
            break
        if isinstance(value, StepNode):
            sub = flatten(value, prefix=f"{step.step_id}/")
            self._log_step(step, "continued", attempt, result=(codec.dumps(sub), repr(value)))
            value = await self._run_continuation(step, sub)
        if options.catch_exceptions:
            value = (value, None)
        return self._record_success(step, value, attempt)

    def _call(
        self, step: FlatStep, args: tuple[object, ...], kwargs: dict[str, object], attempt: int
    ) -> Awaitable[object]:
        """What runs one attempt of the step's body: its coroutine, or the executor's.

        A plain function, as ``_start``: 100,000 steps in flight keep no coroutine of it.
        """
        assert step.func is not None
        context = _make_step_context(self.workflow_id, step.step_id, attempt, self._clock)
        try:  # inspect's check costs ~1 us a call: once per function
            is_async = self._is_async[step.func]
        except KeyError:
            is_async = self._is_async[step.func] = inspect.iscoroutinefunction(step.func)
        except TypeError:  # an unhashable callable
            is_async = inspect.iscoroutinefunction(step.func)
        if is_async:
            set_context(context)  # this task's own context: it ends with the step
            return cast("Awaitable[object]", step.func(*args, **kwargs))
        executor = self._executors.get(step.options.executor or self._default_executor)
        if executor is None:
            raise LookupError(
                f"Step {step.step_id!r} asks for executor {step.options.executor!r}, which this runtime "
                f"does not have. Known: {', '.join(map(repr, self._executors))}. Register it with "
                "workflow.init(executors={name: ...})."
            )
        return executor.run(_make_step_call(step.func, args, kwargs, step.options, context))

    async def _run_continuation(self, step: FlatStep, sub: FlatDag) -> object:
        self._add_steps(sub)
        self._changed()
        return await self._task_for(sub.output)

    def _record_success(self, step: FlatStep, value: object, attempt: int) -> object:
        try:
            blob = codec.dumps(value)
        except TypeError as exc:
            # The step's last row said `running`: record that it failed, and why, so the
            # steps view and get_metadata agree with the run's FAILED status.
            view = self._views[step.step_id]
            view.error = _one_line(exc)
            self._log_step(step, "failed", attempt, error=view.error)
            self._set_state(step.step_id, "failed")
            raise StepFailedError(
                f"Step {step.step_id!r} of run {self.workflow_id!r} returned a value of type "
                f"{type(value).__qualname__} that cannot be checkpointed: {exc.__cause__ or exc}. "
                "Return picklable data (plain values, dataclasses, DataFrames).",
                workflow_id=self.workflow_id,
                step=step.step_id,
            ) from exc
        self._log_step(step, "succeeded", attempt, result=(blob, codec.readable(value)))
        self._set_state(step.step_id, "done")
        return value

    def _log_step(
        self,
        step: FlatStep,
        state: str,
        attempt: int,
        *,
        result: tuple[bytes, str] | None = None,
        error: str | None = None,
    ) -> None:
        blob, text = result if result is not None else (None, None)
        upstream = ",".join(step.upstream) if state == "running" and attempt == 1 else None
        self._queue.append(
            "step_log",
            (
                self.workflow_id,
                step.step_id,
                step.name,
                step.kind,
                state,
                attempt,
                now(),
                blob,
                text,
                error,
                upstream,
            ),
        )

    # ------------------------------------------------------------------ event steps

    async def _run_event(
        self,
        step: FlatStep,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        stored: StoredEvent | None,
    ) -> object:
        assert step.listener is not None
        view = self._views[step.step_id]
        view.attempts += 1
        attempt = view.attempts
        listener = step.listener()
        context = self._event_context(step, attempt)
        set_context(context)
        if stored is not None and stored.timeout_at is not None:
            view.timeout_at = stored.timeout_at.timestamp()
        elif step.timeout_seconds is not None:
            view.timeout_at = self._clock.now() + step.timeout_seconds
        if issubclass(step.listener, TimerListener) and args:
            view.deadline = float(args[0])  # type: ignore[arg-type]
        view.args_text = codec.readable({"args": list(args), "kwargs": kwargs} if kwargs else list(args))
        if issubclass(step.listener, ManualListener):
            key = kwargs.get("key", args[0] if args else None)
            view.inbox_key = key if isinstance(key, str) else None
        self._log_event(step, "waiting", attempt)
        self._set_state(step.step_id, "waiting")
        self._waiting += 1
        timed_out = False
        try:
            try:
                if view.timeout_at is None:  # the usual case: one coroutine less per wait
                    event = await listener.poll_for_event(*args, **kwargs)
                else:
                    event = await self._poll_until(listener, args, kwargs, view.timeout_at)
            finally:
                self._waiting -= 1
        except asyncio.CancelledError:
            if not self.abandoned:
                await _call_cleanup(listener, args, kwargs)
                self._log_event(step, "cancelled", attempt)
            self._set_state(step.step_id, "cancelled")
            raise
        except _TimedOut:
            if step.default is NO_DEFAULT:
                error = EventTimeoutError(
                    f"Event step {step.step_id!r} of run {self.workflow_id!r} got no event within "
                    f"timeout_seconds={step.timeout_seconds!r}.",
                    workflow_id=self.workflow_id,
                    step=step.step_id,
                    timeout_seconds=step.timeout_seconds,
                )
                self._fail_event(step, attempt, error)
                raise error from None
            event, timed_out = step.default, True
        except _NOT_A_FAILURE:
            raise
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: see _NOT_A_FAILURE
            self._fail_event(step, attempt, exc)
            raise StepFailedError(
                f"Listener {step.listener.__qualname__} of event step {step.step_id!r} in run "
                f"{self.workflow_id!r} raised {exc!r} while polling. Resume the run to poll again.",
                workflow_id=self.workflow_id,
                step=step.step_id,
            ) from exc
        received_at = now()
        self._busy += 1
        try:
            self._set_state(step.step_id, "received")
            source_id = TIMEOUT_DEFAULT_SOURCE if timed_out else listener.source_id(event)
            # The contract's step 3: nothing else happens with the event until this is durable.
            await self._checkpoint(step, listener, event, attempt, received_at, source_id)
            self._set_state(step.step_id, "checkpointed")
            await self._commit(step, listener, event, attempt, call_listener=not timed_out)
        finally:
            self._busy -= 1
        return event

    def _event_id(self, step: FlatStep) -> str:
        """The event's id: stable over polls, commits and resumes of this step in this run."""
        return f"{self.workflow_id}/{step.step_id}"

    def _event_context(self, step: FlatStep, attempt: int) -> EventContext:
        return _make_event_context(
            self.workflow_id,
            step.step_id,
            attempt,
            self._clock,
            self._event_id(step),
            self._services,
        )

    async def _poll_until(
        self,
        listener: EventListener,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        timeout_at: float,
    ) -> object:
        try:
            async with asyncio.timeout(None) as scope:
                expiry = asyncio.get_running_loop().create_task(_expire(self._clock, timeout_at, scope))
                try:
                    return await listener.poll_for_event(*args, **kwargs)
                finally:
                    expiry.cancel()
        except TimeoutError:
            if scope.expired():
                raise _TimedOut from None
            raise

    def _checkpoint(
        self,
        step: FlatStep,
        listener: EventListener,
        event: object,
        attempt: int,
        received_at: float,
        source_id: str | None,
    ) -> asyncio.Future[None]:
        """Queue the event's checkpoint row; the future resolves once it is durable."""
        try:
            blob = codec.dumps(event)
        except TypeError as exc:
            self._fail_event(step, attempt, exc)
            raise StepFailedError(
                f"Event step {step.step_id!r} of run {self.workflow_id!r}: listener "
                f"{type(listener).__qualname__} returned a {type(event).__qualname__} that cannot "
                f"be checkpointed ({exc.__cause__ or exc}). Return picklable data from poll_for_event.",
                workflow_id=self.workflow_id,
                step=step.step_id,
            ) from exc
        row = (
            self.workflow_id,
            step.step_id,
            attempt,
            now(),
            received_at,
            source_id,
            blob,
            codec.readable(event),
        )
        # An event sent to this waiting step: its checkpoint is also the send's record.
        handover = None
        if source_id is not None and self._inbox is not None:
            handover = self._inbox.taken_by_checkpoint(self.workflow_id, source_id, blob)
        if handover is None:
            return self._queue.append("event_checkpoint_log", (*row, None, None, None))
        try:
            durable = self._queue.append("event_checkpoint_log", (*row, *handover.checkpoint_columns()))
        except BaseException as exc:  # the store failed earlier: the send must hear of it too
            handover.fail(exc)
            raise
        handover.settle(durable)
        return durable

    async def _finish_stored_event(self, step: FlatStep, stored: StoredEvent) -> object:
        assert stored.payload_blob is not None
        event = codec.loads(stored.payload_blob)
        if not stored.committed:
            assert step.listener is not None
            attempt = max(stored.poll_attempts, 1)
            set_context(self._event_context(step, attempt))
            self._busy += 1
            try:
                call_listener = stored.source_id != TIMEOUT_DEFAULT_SOURCE
                await self._commit(step, step.listener(), event, attempt, call_listener=call_listener)
            finally:
                self._busy -= 1
        return event

    async def _commit(
        self,
        step: FlatStep,
        listener: EventListener,
        event: object,
        attempt: int,
        *,
        call_listener: bool = True,
    ) -> None:
        try:
            # Most listeners keep the base class's no-op: skip its coroutine (one per event).
            if call_listener and type(listener).event_checkpointed is not EventListener.event_checkpointed:
                await listener.event_checkpointed(event)
        except _NOT_A_FAILURE:
            raise
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: see _NOT_A_FAILURE
            self._fail_event(step, attempt, exc)
            raise StepFailedError(
                f"Listener {type(listener).__qualname__} of event step {step.step_id!r} in run "
                f"{self.workflow_id!r} raised {exc!r} in event_checkpointed. The event is "
                "checkpointed: resuming the run calls event_checkpointed again.",
                workflow_id=self.workflow_id,
                step=step.step_id,
            ) from exc
        # The last row of the event, in the narrow commit shape (see ROW_SHAPES).
        row = (
            self.workflow_id,
            step.step_id,
            self._event_id(step),
            "committed",
            attempt,
            now(),
        )
        self._queue.append("event_commit", row)
        self._set_state(step.step_id, "committed")

    def _fail_event(self, step: FlatStep, attempt: int, exc: BaseException) -> None:
        view = self._views[step.step_id]
        view.error = _one_line(exc)
        self._log_event(step, "failed", attempt)
        self._set_state(step.step_id, "failed")

    def _log_event(self, step: FlatStep, state: str, attempt: int) -> asyncio.Future[None]:
        """Queue an event row other than its checkpoint and commit (see ``_checkpoint``)."""
        view = self._views[step.step_id]
        first = state == "waiting"
        row = (
            self.workflow_id,
            step.step_id,
            self._event_id(step),
            state,
            attempt,
            now(),
            step.listener.__qualname__ if first and step.listener else None,
            view.args_text if first else None,
            view.deadline if first else None,
            view.timeout_at if first else None,
            view.error if state == "failed" else None,
        )
        return self._queue.append("event_state_log", row)

    # ------------------------------------------------------------------ snapshots

    def _set_state(self, step_id: str, state: StepState) -> None:
        # Three calls per event: _changed is inlined here.
        view = self._views[step_id]
        view.state = state
        self._times.arrays[state][view.index] = time.time()
        self._snapshots.pop(step_id, None)
        self._version += 1
        if self._subscribers and not self._notify_scheduled:
            self._notify_scheduled = True
            asyncio.get_running_loop().call_soon(self._notify)

    def _changed(self) -> None:
        self._version += 1
        if self._subscribers and not self._notify_scheduled:
            self._notify_scheduled = True
            asyncio.get_running_loop().call_soon(self._notify)

    def _notify(self) -> None:
        self._notify_scheduled = False
        for callback in list(self._subscribers):
            callback()


async def _expire(clock: Clock, deadline: float, scope: asyncio.Timeout) -> None:
    await clock.sleep_until(deadline)
    scope.reschedule(asyncio.get_running_loop().time())


async def _call_cleanup(listener: EventListener, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    try:
        await listener.poll_cancelled(*args, **kwargs)
    except _NOT_A_FAILURE:
        raise
    except BaseException:  # a failing cleanup must not hide the cancellation (nor stop the loop)
        logger.exception(
            "poll_cancelled of %s raised; the wait is cancelled anyway", type(listener).__qualname__
        )


def _retryable(exc: Exception, retry_exceptions: bool | tuple[type[BaseException], ...]) -> bool:
    if isinstance(exc, WorkerLostError):
        return True
    if isinstance(retry_exceptions, tuple):
        return isinstance(exc, retry_exceptions)
    return bool(retry_exceptions)


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text.splitlines()[0] if text else type(exc).__name__


def _blob_or_none(value: object) -> bytes | None:
    try:
        return codec.dumps(value)
    except TypeError:
        return None


def _datetime(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
