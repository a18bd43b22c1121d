"""The scheduler of one run: a task per step, each awaiting its upstream steps' tasks.

A :class:`RunExecution` turns a :class:`~evkit.dag.FlatDag` into step tasks on the loop
it was created on. Checkpointed results come from the store instead of running again.
Function steps run through :class:`~evkit.execution.functions.FunctionSteps`, event
steps through :class:`~evkit.execution.events.EventSteps` (the event contract); the
:class:`~evkit.execution.tracker.RunTracker` keeps what the run looks like. Nothing here
blocks the loop. The engine (``evkit.engine``) creates, registers and cancels executions.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from evkit import codec
from evkit.dag import FlatDag, FlatStep, Ref, resolve_refs
from evkit.errors import EventTimeoutError, StepFailedError, WorkflowCancellationError, WorkflowExecutionError
from evkit.execution.events import EventSteps
from evkit.execution.failures import NOT_A_FAILURE, failure_blob, one_line
from evkit.execution.functions import FunctionSteps
from evkit.execution.parking import ParkedStep
from evkit.execution.scope import RunScope
from evkit.execution.tracker import RunTracker
from evkit.gcscope import BIG_RUN_STEPS, fewer_gc_passes
from evkit.model import EVENT_PAGE_SIZE, RunProgress, RunSnapshot, StepSnapshot, WorkflowStatus
from evkit.services import ServiceRegistry
from evkit.store import run_status
from evkit.store.reads import StoredEvent, StoredRun

if TYPE_CHECKING:
    from evkit.clock import Clock
    from evkit.executors.base import StepExecutor
    from evkit.store import WriteQueue

# Arguments passed as they are (containers are copied by resolve_refs, as a body may mutate them).
_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})


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
        reused: The steps whose checkpoint a re-run reuses (marked so in snapshots).
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
        services: ServiceRegistry,
        reused: Iterable[str] = (),
    ) -> None:
        self.workflow_id = workflow_id
        self.dag = dag
        self._results: dict[str, bytes] = dict(stored.results) if stored else {}
        self._events: dict[str, StoredEvent] = dict(stored.events) if stored else {}
        self._tracker = RunTracker(workflow_id, dict(stored.attempts) if stored else {})
        self._tracker.reused = frozenset(reused)
        self._scope = RunScope(
            workflow_id=workflow_id, queue=queue, clock=clock, tracker=self._tracker, services=services
        )
        self._event_steps = EventSteps(self._scope)
        self._function_steps = FunctionSteps(
            self._scope,
            executors=executors,
            default_executor=default_executor,
            continuations=dict(stored.continuations) if stored else {},
            continue_with=self._run_continuation,
        )
        self._tasks: dict[str, asyncio.Future[object]] = {}  # step tasks, or parked steps
        self._parked_context: contextvars.Context | None = None  # see _park
        self.cancel_requested = False  # set by the engine's cancel(): record CANCELED
        with fewer_gc_passes(len(dag.steps) >= BIG_RUN_STEPS):  # several objects per step, all kept
            self._tracker.add_steps(dag, self._results, self._events)

    @property
    def abandoned(self) -> bool:
        """True once the engine shut down under the run: it records nothing more."""
        return self._scope.abandoned

    @abandoned.setter
    def abandoned(self, value: bool) -> None:
        self._scope.abandoned = value

    # ------------------------------------------------------------------ public state

    @property
    def status(self) -> WorkflowStatus:
        """RUNNING, WAITING, or the final status once the run ended."""
        return self._tracker.live_status

    def snapshot(self) -> RunSnapshot:
        """An immutable picture of the run now (see ``RunTracker.snapshot``)."""
        return self._tracker.snapshot()

    def progress(self, *, event_offset: int = 0, event_limit: int = EVENT_PAGE_SIZE) -> RunProgress:
        """Every step's state and one page of event records (see ``RunTracker.progress``)."""
        return self._tracker.progress(event_offset=event_offset, event_limit=event_limit)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (on this loop, coalesced) after changes; returns an unsubscribe."""
        return self._tracker.subscribe(callback)

    def step_record(self, step_id: str) -> tuple[FlatStep, StepSnapshot] | None:
        """The step's definition and live record, or ``None`` if the run has no such step.

        For a view of one step: its cost does not grow with the run.
        """
        step = self._tracker.steps.get(step_id)
        return None if step is None else (step, self._tracker.step_snapshot(step_id))

    def event_steps_of(self, task: asyncio.Task[object]) -> list[FlatStep]:
        """The event steps ``task`` runs: its own step, or a source step inlined in it.

        For the engine's watchdog, which calls it from its own thread while the loop is
        blocked: it only reads.
        """
        prefix = f"evkit:{self.workflow_id}:"
        name = task.get_name()
        steps = self._tracker.steps
        step = steps.get(name[len(prefix) :]) if name.startswith(prefix) else None
        if step is None:
            return []
        candidates = [step, *(steps[up] for up in step.upstream if up in steps)]
        return [s for s in candidates if s.kind == "event" and self._tasks.get(s.step_id) is task]

    # ------------------------------------------------------------------ running

    async def execute(self) -> object:
        """Run to the end; return the output (checkpointed) or raise.

        Every way out cancels and awaits the run's other step tasks (so none polls or
        commits after the run ended) and records the run's final status, unless the
        engine abandoned the run (shutdown: it stays RUNNING, so RESUMABLE later).

        Raises:
            StepFailedError: A step failed (``__cause__`` is its error); a
                ``WorkflowExecutionError``.
            WorkflowCancellationError: The run was cancelled.
        """
        queue = self._scope.queue
        try:
            output = await self._task_for(self.dag.output)
        except asyncio.CancelledError:
            await self._cancel_steps()
            if self.abandoned or not self.cancel_requested:
                raise
            self._tracker.finish(WorkflowStatus.CANCELED)
            await queue.append(run_status(self.workflow_id, "CANCELED"))
            raise WorkflowCancellationError(
                f"Run {self.workflow_id!r} was cancelled.", workflow_id=self.workflow_id
            ) from None
        except BaseException as exc:  # a SystemExit fails the run too: see NOT_A_FAILURE
            if isinstance(exc, GeneratorExit):
                raise
            await self._cancel_steps()
            error = (
                exc
                if isinstance(exc, WorkflowExecutionError)
                else StepFailedError(
                    f"Run {self.workflow_id!r} failed: {exc!r}",
                    workflow_id=self.workflow_id,
                    step=exc.step if isinstance(exc, EventTimeoutError) else None,
                )
            )
            if error is not exc:
                error.__cause__ = exc
            self._tracker.finish(WorkflowStatus.FAILED, error=one_line(error))
            await queue.append(
                run_status(self.workflow_id, "FAILED", error=(failure_blob(error), one_line(error)))
            )
            raise error from error.__cause__
        self._tracker.finish(WorkflowStatus.SUCCESSFUL)
        await queue.append(
            run_status(self.workflow_id, "SUCCESSFUL", output=(codec.dumps(output), codec.readable(output)))
        )
        return output

    @property
    def finishing(self) -> bool:
        """True once the run's outcome is decided: its output step ended, or it has a final status.

        The engine's ``cancel`` leaves such a run alone: the run ends as it would have,
        and the store, its handle and ``cancel`` all say so.
        """
        if self._tracker.status.is_final:
            return True
        output = self._tasks.get(self.dag.output)
        return output is not None and output.done() and not output.cancelled()

    async def _cancel_steps(self) -> None:
        pending = [task for task in self._tasks.values() if not task.done()]
        for task in pending:
            task.cancel()
        # Await them all so listener cleanup hooks run and no exception goes unretrieved.
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def _task_for(self, step_id: str) -> asyncio.Future[object]:
        """The future of the step's result: its task, started now, or a parked step."""
        task = self._tasks.get(step_id)
        if task is None:
            task = self._tasks[step_id] = self._park(step_id) or self._new_task(step_id)
        return task

    def _new_task(self, step_id: str) -> asyncio.Task[object]:
        return asyncio.get_running_loop().create_task(
            self._run_step(step_id), name=f"evkit:{self.workflow_id}:{step_id}"
        )

    def _park(self, step_id: str) -> ParkedStep | None:
        """Park the step if it starts with a wait its listener can wake (see evkit.execution.parking).

        The wait must still have to poll, and have no ``timeout_seconds``.
        """
        wait = None if step_id in self._results else self._first_wait(self._tracker.steps[step_id])
        if wait is None or wait.timeout_seconds is not None or self._stored_checkpoint(wait.step_id):
            return None
        args = _resolve_args(wait.args, {})
        kwargs = resolve_refs(dict(wait.kwargs), {}) if wait.kwargs else {}
        assert isinstance(kwargs, dict)
        wake = self._event_steps.park(wait, args, kwargs, self._events.get(wait.step_id))
        if wake is None:
            return None
        if self._parked_context is None:
            self._parked_context = contextvars.copy_context()
        return ParkedStep(self, step_id, wake, self._parked_context)

    def _first_wait(self, step: FlatStep) -> FlatStep | None:
        """The wait ``step`` starts with, or ``None``.

        That is the step itself (a source event step) or the source wait it runs inline
        (see ``_runs_inline``).
        """
        if step.kind == "event" and not step.upstream:
            return step
        if len(step.upstream) == 1 and self._runs_inline(step.upstream[0]):
            source = self._tracker.steps[step.upstream[0]]
            return source if source.kind == "event" else None
        return None

    def start_parked(self, step_id: str) -> asyncio.Task[object]:
        """A parked step's wait may have its event: start the step's task (see ParkedStep)."""
        task = self._tasks[step_id] = self._new_task(step_id)
        return task

    def unpark(self, step_id: str, wake: asyncio.Future[None]) -> None:
        """A parked step was cancelled before its task started (see ParkedStep)."""
        wait = self._first_wait(self._tracker.steps[step_id])
        assert wait is not None
        self._event_steps.unpark(wait, wake)

    async def _run_step(self, step_id: str) -> object:
        try:
            steps = self._tracker.steps
            step = steps[step_id]
            if not step.upstream or step_id in self._results or self._stored_checkpoint(step_id):
                return await self._start(step, {})
            if len(step.upstream) == 1:
                up = step.upstream[0]
                if self._runs_inline(up):
                    # The only consumer of a source step (a wait, say) runs it inside its own
                    # task: a task less per wait of a fan-in. It is registered under our task,
                    # so cancelling the run still reaches it.
                    self._tasks[up] = self._tasks[step_id]
                    values = [await self._start(steps[up], {})]
                else:
                    values = [await self._task_for(up)]  # a chain: no gather for one upstream
            else:
                # A big fan-in parks (or starts) all its upstream steps here at once, and
                # every object that makes lives on: see fewer_gc_passes.
                with fewer_gc_passes(len(step.upstream) >= BIG_RUN_STEPS):
                    upstream = list(map(self._task_for, step.upstream))
                values = await _all_results(upstream)
            return await self._start(step, dict(zip(step.upstream, values, strict=True)))
        except (Exception, *NOT_A_FAILURE):
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

    def _runs_inline(self, up: str) -> bool:
        """True when step ``up`` is a source step only one step consumes, not yet started.

        Sources only, so inlining never nests deeper than one level.
        """
        tracker = self._tracker
        return tracker.consumers.get(up) == 1 and not tracker.steps[up].upstream and up not in self._tasks

    def _stored_checkpoint(self, step_id: str) -> bool:
        stored = self._events.get(step_id)
        return stored is not None and stored.checkpointed

    def _start(self, step: FlatStep, results: dict[str, object]) -> Awaitable[object]:
        """What runs ``step`` once its upstream ``results`` are in (body, wait or stored result).

        A plain function, not a coroutine: awaited by the step's own task, it adds no
        coroutine of its own to a step in flight.
        """
        if step.step_id in self._results:
            done = asyncio.get_running_loop().create_future()
            done.set_result(codec.loads(self._results[step.step_id]))
            return done
        stored_event = self._events.get(step.step_id)
        if stored_event is not None and stored_event.checkpointed:
            return self._event_steps.finish_stored(step, stored_event)
        args = _resolve_args(step.args, results)
        kwargs = resolve_refs(dict(step.kwargs), results) if step.kwargs else {}
        assert isinstance(kwargs, dict)
        if step.kind == "event":
            return self._event_steps.run(step, args, kwargs, stored_event)
        return self._function_steps.run(step, args, kwargs)

    async def _run_continuation(self, sub: FlatDag) -> object:
        self._tracker.add_steps(sub, self._results, self._events)
        self._tracker.changed()
        return await self._task_for(sub.output)


def _all_results(tasks: list[asyncio.Future[object]]) -> asyncio.Future[list[object]]:
    """The tasks' results in their order, or the first failure: ``asyncio.gather`` for step tasks.

    ``gather`` copies the caller's context for the callback it adds to each task; a
    fan-in of many waits keeps one shared callback context instead (fewer objects alive
    per waiting step, so fewer and shorter GC passes). As with ``gather``, cancelling the
    result cancels the tasks, and a cancelled task fails the result.
    """
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[list[object]] = loop.create_future()
    pending = len(tasks)
    context = contextvars.copy_context()

    def task_done(task: asyncio.Future[object]) -> None:
        nonlocal pending
        pending -= 1
        if outcome.done():
            if not task.cancelled():
                task.exception()  # retrieved, as gather does once its outcome is set
            return
        if task.cancelled():
            outcome.set_exception(asyncio.CancelledError())
        elif (error := task.exception()) is not None:
            outcome.set_exception(error)
        elif pending == 0:
            outcome.set_result([t.result() for t in tasks])

    def outcome_done(_: asyncio.Future[list[object]]) -> None:
        if outcome.cancelled():
            for task in tasks:
                task.cancel()

    for task in tasks:
        task.add_done_callback(task_done, context=context)
    outcome.add_done_callback(outcome_done, context=context)
    return outcome


def _resolve_args(args: tuple[object, ...], results: dict[str, object]) -> tuple[object, ...]:
    """The step's positional arguments with upstream results in place of their refs.

    Refs usually sit in a step's own arguments: those (and plain values) are resolved
    here, without a generic ``resolve_refs`` walk per argument.
    """
    return tuple(
        [
            results[a.step_id] if type(a) is Ref else a if type(a) in _PLAIN else resolve_refs(a, results)
            for a in args
        ]
    )
