"""The scheduler of one store on one event loop: starts, resumes, cancels and tracks runs.

Every method here runs on the engine's loop (the runtime bridges other threads to it).
Each run is one task owned by the engine; its exception is always retrieved, and the
run's outcome is written to the store before the task ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from evkit import codec
from evkit.clock import Clock
from evkit.dag import FlatDag
from evkit.errors import (
    RunStateError,
    WorkflowNotFoundError,
    WorkflowNotResumableError,
    WorkflowStillActiveError,
)
from evkit.execution import RunExecution
from evkit.execution.definitions import RerunRequest, RunDefinitions
from evkit.execution.plan import RunPlan
from evkit.execution.prints import DagCodes, dag_codes, encode_codes
from evkit.executors.base import StepExecutor
from evkit.listeners.manual import Inbox
from evkit.model import RunProgress, RunSnapshot, StepSnapshot, WorkflowStatus
from evkit.services import ServiceRegistry
from evkit.store import StoreWriter, WriteQueue, run_status
from evkit.store.reads import DELETE_RUN_SQL, StoredRun, list_statuses, load_run, run_exists
from evkit.store.service import StoreReads
from evkit.watchdog import LoopWatchdog

logger = logging.getLogger("evkit")

# How long a listener may hold the loop (a blocking call in poll_for_event) before the
# engine warns; $EVKIT_SLOW_LISTENER_SECONDS overrides it, and 0 turns the warning off.
DEFAULT_SLOW_LISTENER_SECONDS = 0.5
_LISTENER_HOOKS = ("poll_for_event", "event_checkpointed", "poll_cancelled", "source_id", "__init__")


@dataclass(slots=True)
class ActiveRun:
    """A run this engine is executing: its task, and its execution once loaded."""

    workflow_id: str
    task: asyncio.Task[object]
    execution: RunExecution | None = None
    cancel_requested: bool = False
    subscribers: list[Callable[[], None]] = field(default_factory=list)
    registered: threading.Event = field(default_factory=threading.Event)
    # Set once a failure was raised to someone waiting for the run (a handle's result()
    # or await, get_output): it is then not logged as well (see RunHandle.__del__).
    outcome_retrieved: bool = False
    # Why the run could not be registered (nothing of it is in the store); set before
    # `registered`, so the starter can raise it at its call instead of returning a handle.
    registration_error: Exception | None = None
    dag: FlatDag | None = None  # the DAG a new run was started with (None on resume)
    # What a re-run of a stored run reuses and runs again; set before `registered`.
    plan: RunPlan | None = None

    def snapshot(self) -> RunSnapshot:
        """The execution's snapshot, or a RUNNING one while the run is loading.

        While loading, a new run shows the steps it was started with, all pending (a
        resume shows none until the store is read).
        """
        if self.execution is not None:
            return self.execution.snapshot()
        steps = tuple(
            StepSnapshot(step_id=s.step_id, name=s.name, kind=s.kind, state="pending", upstream=s.upstream)
            for s in (self.dag.steps if self.dag is not None else ())
        )
        return RunSnapshot(workflow_id=self.workflow_id, status=WorkflowStatus.RUNNING, steps=steps)

    def progress(self, *, event_offset: int, event_limit: int) -> RunProgress:
        """The execution's progress, or one made from :meth:`snapshot` while loading."""
        if self.execution is not None:
            return self.execution.progress(event_offset=event_offset, event_limit=event_limit)
        return RunProgress.of_snapshot(self.snapshot(), event_offset=event_offset, event_limit=event_limit)

    @property
    def status(self) -> WorkflowStatus:
        """The live status."""
        return self.execution.status if self.execution is not None else WorkflowStatus.RUNNING


def _waits_on_inbox(dag: FlatDag) -> bool:
    """True when some event step of ``dag`` takes its event from the inbox (``send_event``)."""
    return any(step.listener is not None and step.listener.uses_inbox for step in dag.steps)


def _slow_listener_seconds(value: float | None) -> float:
    if value is None:
        text = os.environ.get("EVKIT_SLOW_LISTENER_SECONDS", "")
        try:
            value = float(text) if text.strip() else DEFAULT_SLOW_LISTENER_SECONDS
        except ValueError:
            raise ValueError(
                f"$EVKIT_SLOW_LISTENER_SECONDS must be a number of seconds >= 0 (0 turns the "
                f"slow-listener warning off), got {text!r}."
            ) from None
    if not value >= 0:
        raise ValueError(f"`slow_listener_seconds` must be >= 0 (0 turns the warning off), got {value!r}.")
    return value


class Engine:
    """Runs workflows of one store on the loop it was created on.

    Args:
        writer: The store's writer (owned by the runtime).
        clock: The clock timers and timeouts use.
        executors: Step executors by name.
        default_executor: The name of the executor steps use by default.
        slow_listener_seconds: Warn when a listener blocks the loop this long (``None``:
            ``$EVKIT_SLOW_LISTENER_SECONDS``, else 0.5; 0 turns the warning off).

    Raises:
        ValueError: ``slow_listener_seconds`` (or the variable) is not a number >= 0.
    """

    def __init__(
        self,
        *,
        writer: StoreWriter,
        clock: Clock,
        executors: Mapping[str, StepExecutor],
        default_executor: str,
        slow_listener_seconds: float | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.writer = writer
        self.queue = WriteQueue(writer, self.loop)
        self.clock = clock
        self.executors = dict(executors)
        self.default_executor = default_executor
        self.inbox = Inbox(self.queue)
        self.definitions = RunDefinitions(self.queue, writer.path)
        self._active: dict[str, ActiveRun] = {}
        # What listeners may use (EventContext.services); never the engine itself. A
        # listener may add its own service (the HTTP server, Redis readers).
        self.services = ServiceRegistry(self.inbox, StoreReads(self.queue, writer, self._active.keys()))
        self._finished: dict[str, RunExecution] = {}
        self.slow_listener_seconds = _slow_listener_seconds(slow_listener_seconds)
        self._watchdog = (
            LoopWatchdog(
                self.loop,
                threshold_seconds=self.slow_listener_seconds,
                is_active=lambda: bool(self._active),
                describe=self._blocking_listener,
            )
            if self.slow_listener_seconds > 0
            else None
        )

    # ------------------------------------------------------------------ runs

    def start(
        self,
        workflow_id: str,
        dag: FlatDag | None,
        *,
        metadata: Mapping[str, object] | None = None,
        codes: DagCodes | None = None,
        rerun: RerunRequest | None = None,
    ) -> ActiveRun:
        """Start a run, re-run a stored one with ``dag``, or resume it; returns at once.

        ``dag`` is ``None`` for a resume (the stored code): the run must then exist in
        the store. With a ``dag``, a run the store has is compared with it (see
        ``evkit.execution.plan``): what is unchanged is reused. ``codes`` are the
        code digests of ``dag`` (``evkit.execution.prints.dag_codes``, computed here
        when not given); ``rerun`` says what to
        poll or run again, and whether the run is a fork of another.

        Raises:
            RunStateError: A run with this id is already running in this process.
        """
        if workflow_id in self._active:
            raise RunStateError(
                f"Run {workflow_id!r} is already running in this process. Wait for it "
                f"(workflow.get_output({workflow_id!r})), cancel it, or use another workflow_id.",
                workflow_id=workflow_id,
            )
        request = rerun or RerunRequest()
        if dag is not None and codes is None:
            codes = dag_codes(dag)
        task = self.loop.create_task(
            self._main(workflow_id, dag, metadata, codes, request), name=f"evkit-run:{workflow_id}"
        )
        active = ActiveRun(workflow_id=workflow_id, task=task, dag=dag)
        self._active[workflow_id] = active
        task.add_done_callback(lambda t: self._ended(workflow_id, t))
        if self._watchdog is not None:
            self._watchdog.ensure_running()
        return active

    def _ended(self, workflow_id: str, task: asyncio.Task[object]) -> None:
        active = self._active.get(workflow_id)
        if active is None or active.task is not task:
            # A run that could not be registered: its starter got the error, and the id
            # may already be another start's.
            if not task.cancelled():
                task.exception()
            return
        del self._active[workflow_id]
        if active.execution is not None:
            self._finished[workflow_id] = active.execution
        self.services.release_run(workflow_id)
        if not task.cancelled():
            # Retrieved here so asyncio never reports it; the run's handle raises it to whoever
            # waits, and logs it if nobody does (RunHandle.__del__).
            task.exception()

    async def _main(
        self,
        workflow_id: str,
        dag: FlatDag | None,
        metadata: Mapping[str, object] | None,
        codes: DagCodes | None,
        request: RerunRequest,
    ) -> object:
        active = self._active[workflow_id]
        loading = self._load_and_execute(active, dag, metadata, codes, request)
        try:
            return await loading
        except WorkflowNotResumableError:
            raise  # the handle reports it (an unknown or cancelled run), as documented
        except Exception as exc:
            if not active.registered.is_set():
                # Nothing of the run is stored: its starter raises this at its call. The id
                # is free at once, so that the starter may try again.
                active.registration_error = exc
                del self._active[workflow_id]
            raise
        finally:
            active.registered.set()  # never leave a starter waiting

    async def _load_and_execute(
        self,
        active: ActiveRun,
        dag: FlatDag | None,
        metadata: Mapping[str, object] | None,
        codes: DagCodes | None,
        request: RerunRequest,
    ) -> object:
        workflow_id = active.workflow_id
        definitions = self.definitions
        if request.fork_from is not None:
            await definitions.fork(request.fork_from, workflow_id)
        stored = await self.queue.read(load_run, workflow_id)
        if stored is None:
            if dag is None:
                raise WorkflowNotResumableError(
                    f"Run {workflow_id!r} is not in store {self.writer.path!r}, so it cannot be "
                    "resumed. Check the id with workflow.list_all().",
                    workflow_id=workflow_id,
                )
            # Checked here too (the API checks a node's names before it starts): nothing of
            # the run is stored yet, so the starter gets the error at its call.
            definitions.resolve_names(workflow_id, dag, request)
            definitions.define(workflow_id, dag, metadata, codes)
        else:
            status = WorkflowStatus(stored.status)
            if status is WorkflowStatus.CANCELED:
                raise WorkflowNotResumableError(
                    f"Run {workflow_id!r} was cancelled, and cancelled runs cannot be resumed. "
                    f"Delete it (workflow.delete({workflow_id!r})) or use another workflow_id.",
                    workflow_id=workflow_id,
                )
            if dag is None and request.fork_from is not None:
                dag = definitions.load_dag(workflow_id, stored.dag_blob)
            if dag is None:
                # A resume: the stored code, as it was (crash recovery).
                if status is WorkflowStatus.SUCCESSFUL:
                    assert stored.output_blob is not None
                    return codec.loads(stored.output_blob)
                dag = definitions.load_dag(workflow_id, stored.dag_blob)
                definitions.warn_of_live_definitions(workflow_id, dag, stored)
            else:
                plan = definitions.plan(workflow_id, dag, codes, stored, request)
                active.plan = plan
                # A notice, not a problem: at WARNING so that a notebook shows it (Python
                # prints WARNING and above when the user configured no logging).
                logger.warning("%s", plan.summary())
                if not plan.changed and status is WorkflowStatus.SUCCESSFUL:
                    assert stored.output_blob is not None
                    return codec.loads(stored.output_blob)
                if plan.changed:
                    user_metadata = (
                        stored.user_metadata if metadata is None else codec.to_json(dict(metadata))
                    )
                    # A fork of the stored DAG keeps its record; another DAG has its own.
                    record = (
                        encode_codes(codes)
                        if codes is not None
                        else stored.fingerprints_blob or encode_codes(dag_codes(dag))
                    )
                    stored = definitions.supersede(workflow_id, dag, record, stored, plan, user_metadata)
        # Durable before any step runs, so a run that was started is never forgotten.
        await self.queue.append(run_status(workflow_id, "RUNNING"))
        active.registered.set()
        execution = RunExecution(
            workflow_id=workflow_id,
            dag=dag,
            stored=stored,
            queue=self.queue,
            clock=self.clock,
            executors=self.executors,
            default_executor=self.default_executor,
            services=self.services,
            reused=active.plan.reused if active.plan is not None else (),
        )
        active.execution = execution
        execution.cancel_requested = active.cancel_requested
        for callback in active.subscribers:
            execution.subscribe(callback)
            callback()
        if active.cancel_requested:
            # cancel() came while the run loaded (it does not interrupt a load, so a
            # finished run that was loaded keeps its status): cancel it now it can record it.
            active.task.cancel()
        if _waits_on_inbox(dag):
            # Read the run's inbox now, while nothing is queued: the read then runs at
            # once. Started by the first wait instead, it would queue behind that wait's
            # batch, which holds every other wait's row too (a big run's read would wait
            # for all of them to be written), and events sent meanwhile would wait for it.
            self.inbox.prime(workflow_id)
        return await execution.execute()

    def _blocking_listener(self, frame: types.FrameType) -> tuple[types.FrameType, str] | None:
        """The listener hook's frame the loop is in, and the watchdog's warning; else ``None``.

        Runs on the watchdog's thread while the loop thread is blocked: it only reads.
        """
        task = asyncio.current_task(self.loop)
        if task is None:
            return None
        frames: dict[types.CodeType, types.FrameType] = {}
        entry: types.FrameType | None = frame
        while entry is not None:
            frames.setdefault(entry.f_code, entry)
            entry = entry.f_back
        for active in list(self._active.values()):
            execution = active.execution
            if execution is None:
                continue
            for step in execution.event_steps_of(task):
                for hook in _LISTENER_HOOKS:
                    code = getattr(getattr(step.listener, hook, None), "__code__", None)
                    if code in frames:
                        assert step.listener is not None
                        return frames[code], (
                            f"Listener {step.listener.__qualname__}.{hook} of event step "
                            f"{step.step_id!r} in run {execution.workflow_id!r} has blocked the event "
                            f"loop for over {self.slow_listener_seconds:g} s "
                            f"(now at {frame.f_code.co_filename}:{frame.f_lineno}, in "
                            f"{frame.f_code.co_name}): every other wait, timer and widget on this loop "
                            "is frozen meanwhile. Await instead of blocking (asyncio.sleep, an async "
                            "client), or move the blocking call to a thread with "
                            "`await asyncio.to_thread(...)`."
                        )
        return None

    def active(self, workflow_id: str) -> ActiveRun | None:
        """The live run with this id, if this engine is executing it."""
        return self._active.get(workflow_id)

    def last_execution(self, workflow_id: str) -> RunExecution | None:
        """The execution of a run that ended in this process (for its final snapshot)."""
        active = self._active.get(workflow_id)
        if active is not None and active.execution is not None:
            return active.execution
        return self._finished.get(workflow_id)

    async def cancel(self, workflow_id: str) -> WorkflowStatus:
        """Cancel a run unless it already finished; return the status it ends with.

        A live run's waits are cancelled (cleanup hooks awaited) and CANCELED is recorded.
        A run that is not live (RESUMABLE) just gets CANCELED in the store. A finished
        run is left as it is: its status, output and error never change. A cancel that
        comes after a live run's outcome was decided (its output step ended) loses the
        race the same way: the run finishes SUCCESSFUL or FAILED, as it would have.

        Returns:
            ``CANCELED`` if the run is cancelled (by this call or an earlier one);
            ``SUCCESSFUL`` or ``FAILED`` if it had already finished, and nothing changed.

        Raises:
            WorkflowNotFoundError: The store has no such run.
        """
        active = self._active.get(workflow_id)
        if active is not None:
            execution = active.execution
            if not active.task.done() and not (execution is not None and execution.finishing):
                active.cancel_requested = True
                if execution is not None:
                    execution.cancel_requested = True
                    active.task.cancel()
                # else: loading; _load_and_execute cancels the run once it exists (it
                # may also find the run finished in the store: then it stays finished).
            await asyncio.wait([active.task])  # its outcome goes to the run's handle
            if active.execution is not None and active.execution.status.is_final:
                return active.execution.status
            # It ended without executing (it loaded a finished run, or failed to load), or
            # was abandoned: the store says how it stands.
        stored = await self.load(workflow_id)
        if stored is None:
            raise WorkflowNotFoundError(
                f"Run {workflow_id!r} is not in store {self.writer.path!r}; nothing to cancel.",
                workflow_id=workflow_id,
            )
        if workflow_id in self._active:  # resumed while the store was read
            return await self.cancel(workflow_id)
        status = WorkflowStatus(stored.status)
        if status.is_final:
            return status
        await self.queue.append(run_status(workflow_id, "CANCELED"))
        return WorkflowStatus.CANCELED

    async def delete(self, workflow_id: str) -> None:
        """Delete everything the store holds about a finished or resumable run.

        Raises:
            WorkflowStillActiveError: The run is running in this process.
            WorkflowNotFoundError: The store has no such run.
        """
        if workflow_id in self._active:
            raise WorkflowStillActiveError(
                f"Run {workflow_id!r} is still running; cancel it before deleting it.",
                workflow_id=workflow_id,
            )
        if not await self.queue.read(run_exists, workflow_id):
            raise WorkflowNotFoundError(
                f"Run {workflow_id!r} is not in store {self.writer.path!r}; nothing to delete.",
                workflow_id=workflow_id,
            )
        for sql in DELETE_RUN_SQL:
            self.queue.execute(sql, [workflow_id])
        await self.queue.flush()
        self._finished.pop(workflow_id, None)

    async def load(self, workflow_id: str, *, with_steps: bool = False) -> StoredRun | None:
        """What the store holds about a run (after flushing queued writes)."""
        # WriteQueue.read passes positional arguments only.
        return await self.queue.read(lambda con: load_run(con, workflow_id, with_steps=with_steps))

    async def statuses(self) -> list[tuple[str, WorkflowStatus]]:
        """Every run with its status.

        Live runs as the engine sees them; stored RUNNING ones no live scheduler owns as
        RESUMABLE.
        """
        result = []
        for workflow_id, stored in await self.queue.read(list_statuses):
            result.append((workflow_id, self.status_of(workflow_id, stored)))
        return result

    def status_of(self, workflow_id: str, stored_status: str) -> WorkflowStatus:
        """Combine the stored status with what is live here."""
        active = self._active.get(workflow_id)
        if active is not None:
            return active.status
        status = WorkflowStatus(stored_status)
        if status in (WorkflowStatus.RUNNING, WorkflowStatus.WAITING):
            return WorkflowStatus.RESUMABLE
        return status

    async def aclose(self) -> None:
        """Stop executing, write what is queued, and close the executors.

        Runs stay RUNNING in the store, so they are RESUMABLE later. Does not close the store.
        """
        if self._watchdog is not None:
            self._watchdog.stop()
        for active in list(self._active.values()):
            if active.execution is not None:
                if active.execution.finishing:
                    continue  # its outcome is decided: let it record it (awaited below)
                active.execution.abandoned = True
            active.task.cancel()
        await asyncio.gather(*(a.task for a in list(self._active.values())), return_exceptions=True)
        await self.services.aclose()
        await self.queue.aclose()
        for executor in self.executors.values():
            await executor.aclose()
