"""``RunHandle``: what ``run_async`` and ``resume_async`` return.

It waits for the output (blocking or awaitable, from any thread and loop), reports the
status, cancels, gives snapshots and progress of the live run, and shows a live view in a
notebook. Every call is carried to the engine's loop by the runtime.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

from evkit import codec
from evkit.dag import Ref
from evkit.errors import RunStateError, StepFailedError, WorkflowCancellationError
from evkit.execution.plan import RunPlan
from evkit.gcscope import BIG_RUN_STEPS, fewer_gc_passes
from evkit.model import EVENT_PAGE_SIZE, RunProgress, RunSnapshot, StepSnapshot, WorkflowStatus
from evkit.runtime import running_loop
from evkit.store.details import StepDetailsRecord, load_step_details

if TYPE_CHECKING:
    from evkit.engine import ActiveRun, Engine
    from evkit.runtime import Runtime

logger = logging.getLogger("evkit")


@dataclass(frozen=True, slots=True, kw_only=True)
class StepDetails:
    """Everything known of one step of a live run, for a view that shows it in detail.

    Attributes:
        step: The step's live record (``None`` while the run is loading, or no such step).
        call_text: A function step's arguments as readable text (the result of an
            upstream step shows as ``<result of 'id'>``); ``None`` for an event step.
        stored: What the store holds of it (attempts, result or payload preview);
            ``None`` before its first row.
        failure: The exception the step raised, when it failed the run in this process
            (with its traceback); ``None`` otherwise (the store keeps no traceback).
    """

    step: StepSnapshot | None
    call_text: str | None
    stored: StepDetailsRecord | None
    failure: BaseException | None = None


@final
class RunHandle:
    """A run started with ``run_async`` or ``resume_async``.

    ``await handle`` (from any loop) or ``handle.result(timeout=...)`` gives the output;
    ``handle.status`` polls; ``handle.cancel()`` cancels; in a notebook, displaying it
    shows a live view of the run.
    """

    def __init__(self, runtime: Runtime, active: ActiveRun) -> None:
        self.workflow_id = active.workflow_id
        self._runtime = runtime
        self._active = active
        self._engine_loop = active.task.get_loop()
        self._future: concurrent.futures.Future[object] = concurrent.futures.Future()
        self._future.set_running_or_notify_cancel()
        self._runtime.call_soon(lambda _: active.task.add_done_callback(self._copy_outcome))

    def _copy_outcome(self, task: asyncio.Task[object]) -> None:
        if task.cancelled():
            self._future.set_exception(
                WorkflowCancellationError(
                    f"Run {self.workflow_id!r} stopped: its runtime was closed or its loop ended. "
                    f"Resume it with workflow.resume({self.workflow_id!r}).",
                    workflow_id=self.workflow_id,
                )
            )
        elif (exc := task.exception()) is not None:
            self._future.set_exception(exc)
        else:
            self._future.set_result(task.result())

    def __repr__(self) -> str:
        return f"<evkit.RunHandle {self.workflow_id!r} {self.status.value}>"

    @property
    def plan(self) -> RunPlan | None:
        """What this re-run reuses and runs again (``None`` for a new run or a resume).

        Set once the run is registered: at once from a script; in a notebook cell on the
        kernel's loop, a moment after ``run_async`` returns. ``plan.summary()`` is the
        line the re-run logged.
        """
        return self._active.plan

    def __del__(self) -> None:
        # A failure is raised to whoever waits for the run; it is logged only when nobody
        # did and nobody can any more: the run failed and its last handle is gone (a
        # run_async whose handle was dropped stays alive until the run ends).
        future = getattr(self, "_future", None)
        active = getattr(self, "_active", None)
        if future is None or active is None or not future.done() or active.outcome_retrieved:
            return
        error = future.exception()
        if error is not None and not isinstance(error, WorkflowCancellationError):
            logger.warning("evkit run %r failed, and nothing awaited its handle: %s", self.workflow_id, error)

    def __await__(self):  # type: ignore[no-untyped-def]
        """Wait for the output without blocking the loop you await on."""
        return self._wait().__await__()

    async def _wait(self) -> object:
        try:
            if running_loop() is self._engine_loop:
                return await asyncio.shield(self._active.task)
            return await asyncio.wrap_future(self._future)
        except Exception:
            self._active.outcome_retrieved = True
            raise

    def result(self, timeout: float | None = None) -> object:
        """Block until the run ends and return its output.

        Args:
            timeout: Seconds to wait at most (``None``: no limit).

        Raises:
            StepFailedError: The run failed (``__cause__`` is the step's error); a
                ``WorkflowExecutionError``.
            WorkflowCancellationError: The run was cancelled.
            TimeoutError: ``timeout`` passed; the run goes on.
        """
        # While you wait here the run does its work, within this call: a big one does it
        # with fewer GC passes (the GC's thresholds are yours again when this returns).
        with fewer_gc_passes(self._step_count() >= BIG_RUN_STEPS):
            return self._result(timeout)

    def _result(self, timeout: float | None) -> object:
        if running_loop() is self._engine_loop:

            async def wait(_: Engine) -> object:
                return await asyncio.wait_for(asyncio.shield(self._active.task), timeout)

            try:
                return self._runtime.call(wait)
            except TimeoutError:
                raise
            except Exception:
                self._active.outcome_retrieved = True
                raise
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"Run {self.workflow_id!r} did not finish within {timeout} s; it is still "
                f"{self.status.value}. Wait again, or cancel it with handle.cancel()."
            ) from None
        except Exception:
            self._active.outcome_retrieved = True
            raise

    def _step_count(self) -> int:
        """How many steps the run has (0 while a resume is still loading it)."""
        execution = self._active.execution
        dag = execution.dag if execution is not None else self._active.dag
        return len(dag.steps) if dag is not None else 0

    def done(self) -> bool:
        """True once the run ended (in any way)."""
        return self._future.done()

    async def wait_status(
        self, *statuses: WorkflowStatus, timeout_seconds: float | None = None
    ) -> WorkflowStatus:
        """Wait, without blocking the loop, until the run has one of ``statuses``.

        Woken by the run's own changes (no polling). With no statuses, waits for a final
        one (SUCCESSFUL, FAILED or CANCELED).

        Returns:
            The status reached.

        Raises:
            RunStateError: The run ended in another status first.
            TimeoutError: ``timeout_seconds`` passed first.
        """
        wanted = set(statuses) or {s for s in WorkflowStatus if s.is_final}
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        listening = True

        def on_change(*_: object) -> None:
            # Also called from the run's done callback, which cannot be removed: it may
            # fire long after this wait returned and its loop closed.
            if listening and not loop.is_closed():
                loop.call_soon_threadsafe(changed.set)

        unsubscribe = self.subscribe(on_change)
        self._future.add_done_callback(on_change)
        try:
            async with asyncio.timeout(timeout_seconds):
                while True:
                    changed.clear()
                    status = self.status
                    if status in wanted:
                        return status
                    if self.done():
                        raise RunStateError(
                            f"Run {self.workflow_id!r} ended {status.value} before it was "
                            f"{' or '.join(sorted(s.value for s in wanted))}.",
                            workflow_id=self.workflow_id,
                        )
                    await changed.wait()
        finally:
            listening = False
            self._runtime.call_soon(lambda _: unsubscribe())

    async def wait_waiting(self, *, timeout_seconds: float | None = None) -> None:
        """Wait until every runnable step of the run waits on an event (status WAITING).

        Raises:
            RunStateError: The run ended first.
            TimeoutError: ``timeout_seconds`` passed first.
        """
        await self.wait_status(WorkflowStatus.WAITING, timeout_seconds=timeout_seconds)

    @property
    def status(self) -> WorkflowStatus:
        """The run's status now (RUNNING, WAITING, then its final status)."""
        if not self._future.done():
            return self._active.status
        execution = self._active.execution
        if execution is not None:
            return execution.status
        exc = self._future.exception()
        if exc is None:
            return WorkflowStatus.SUCCESSFUL
        return (
            WorkflowStatus.CANCELED if isinstance(exc, WorkflowCancellationError) else WorkflowStatus.FAILED
        )

    def cancel(self) -> WorkflowStatus:
        """Cancel the run unless it already finished; return the status it ends with.

        Waits are cancelled, cleanup hooks awaited, and CANCELED is recorded. Like
        ``concurrent.futures.Future.cancel()``, a cancel that comes too late does nothing:
        a run that already finished, or whose output step already ended, keeps its
        status and output, and :meth:`result` returns (or raises) as it would have.

        Returns:
            ``WorkflowStatus.CANCELED`` if the run is cancelled; ``SUCCESSFUL`` or
            ``FAILED`` if it had already finished (then nothing changed).
        """
        return self._runtime.call(lambda engine: engine.cancel(self.workflow_id))

    async def cancel_async(self) -> WorkflowStatus:
        """Like :meth:`cancel`, awaitable."""
        return await self._runtime.acall(lambda engine: engine.cancel(self.workflow_id))

    def snapshot(self) -> RunSnapshot:
        """An immutable picture of the run now (see ``RunSnapshot``)."""
        return self._runtime.call_soon(lambda _: self._active.snapshot())

    def progress(self, *, event_offset: int = 0, event_limit: int = EVENT_PAGE_SIZE) -> RunProgress:
        """A cheaper picture for live views: every step's state, one page of event steps.

        Args:
            event_offset: Index of the first event step wanted, counting event steps only
                (moved onto a page start and into range).
            event_limit: How many event steps to describe in full.
        """
        return self._runtime.call_soon(
            lambda _: self._active.progress(event_offset=event_offset, event_limit=event_limit)
        )

    async def step_details_async(self, step_id: str) -> StepDetails:
        """Read what is known of one step: its live record, its arguments, its stored rows.

        The store is read on its writer thread, after the writes queued before this call,
        so the loop is not blocked. For a view of one step, on demand: a result or payload
        comes back as a preview (the store's readable text, cut at about 2 KB).
        """
        workflow_id = self.workflow_id

        async def read(engine: Engine) -> tuple[StepSnapshot | None, str | None, StepDetailsRecord | None]:
            execution = self._active.execution
            found = execution.step_record(step_id) if execution is not None else None
            record = call_text = None
            if found is not None:
                step, record = found
                call_text = _call_text(step.args, step.kwargs) if step.kind == "function" else None
            stored = await engine.queue.read(load_step_details, workflow_id, step_id)
            return record, call_text, stored

        record, call_text, stored = await self._runtime.acall(read)
        failure = None
        if self._future.done() and isinstance(error := self._future.exception(), StepFailedError):
            failure = error.__cause__ if error.step == step_id else None
        return StepDetails(step=record, call_text=call_text, stored=stored, failure=failure)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` on the engine's loop after the run changes; returns an unsubscribe.

        Keep the callback short: it runs on the engine's loop.
        """

        def attach(_: Engine) -> Callable[[], None]:
            execution = self._active.execution
            if execution is not None:
                return execution.subscribe(callback)
            self._active.subscribers.append(callback)
            return lambda: self._active.subscribers.remove(callback)

        return self._runtime.call_soon(attach)

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, object]:
        """The live widget in a notebook (through ``evkit.notebook``, if installed)."""
        notebook = _notebook_module("display")
        if notebook is None:
            return {"text/plain": repr(self)}
        return notebook.mimebundle(self, include=include, exclude=exclude)  # type: ignore[no-any-return]

    def plot_timeline(self, **kwargs: object) -> object:
        """Draw the run's steps and event phases on a time axis (matplotlib), from the store.

        Raises:
            ImportError: matplotlib is not installed (``pip install evkit[notebook]``).
        """
        return draw_timeline(self.workflow_id, **kwargs)

    @property
    def runtime(self) -> Runtime:
        """The runtime executing this run."""
        return self._runtime

    @property
    def engine_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the run executes on."""
        return self._engine_loop


def _call_text(args: tuple[object, ...], kwargs: Mapping[str, object]) -> str:
    """A function step's arguments as readable text, upstream results named by step id."""

    def shown(value: object) -> object:
        if isinstance(value, Ref):
            return f"<result of {value.step_id!r}>"
        if isinstance(value, list | tuple):
            return [shown(v) for v in value]
        if isinstance(value, dict):
            return {k: shown(v) for k, v in value.items()}
        return value

    return codec.readable({"args": shown(list(args)), "kwargs": shown(dict(kwargs))})


def _notebook_module(name: str) -> Any:
    """``evkit.notebook.<name>``, or ``None`` without the ``[notebook]`` extra."""
    # The notebook layer sits above this one and needs the optional [notebook] extra, so
    # it is looked up by name when a notebook asks for it, never imported up front.
    try:
        return importlib.import_module(f"evkit.notebook.{name}")
    except ImportError:
        return None


def draw_timeline(workflow_id: str, **kwargs: object) -> object:
    """``evkit.notebook.timeline.plot_timeline`` (see ``workflow.plot_timeline``).

    Raises:
        ImportError: matplotlib is not installed (``pip install evkit[notebook]``).
    """
    timeline = _notebook_module("timeline")
    if timeline is None:
        raise ImportError("plot_timeline needs matplotlib: pip install 'evkit[notebook]'")
    return timeline.plot_timeline(workflow_id, **kwargs)
