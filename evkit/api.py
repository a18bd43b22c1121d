"""The functions users call (``init``, ``run``, ``get_status``, ``sql``...).

``run_async`` returns a :class:`~evkit.handle.RunHandle`. The functions work from any
thread and any loop; the runtime (``evkit.runtime``) carries each call to the engine's
loop. Ray Workflows' names and behaviour are kept where they apply.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from evkit import codec, operations
from evkit.client import ClientRuntime, RemoteRunHandle, new_event_id, open_or_connect, statuses
from evkit.context import current_clock
from evkit.dag import NO_DEFAULT, EventNode, StepNode, any_of, flatten, set_runner, step, wait_for_event
from evkit.errors import (
    PayloadError,
    StoreError,
)
from evkit.execution.definitions import RerunRequest
from evkit.execution.plan import resolve_step_names
from evkit.execution.prints import dag_codes
from evkit.executors import resolve_executor
from evkit.gcscope import BIG_RUN_STEPS, fewer_gc_passes
from evkit.handle import RunHandle, draw_timeline
from evkit.listeners.base import TimerListener
from evkit.model import (
    DEFAULT_STORAGE as DEFAULT_STORAGE,
    MAX_EVENT_KEY_CHARS,
    MAX_WORKFLOW_ID_CHARS,
    WorkflowStatus,
)
from evkit.runtime import LoopMode, Runtime, running_loop
from evkit.store.connection import store_errors

if TYPE_CHECKING:
    import duckdb

    from evkit.clock import Clock
    from evkit.engine import ActiveRun

logger = logging.getLogger("evkit")

_runtime: Runtime | ClientRuntime | None = None
# Reentrant: get_runtime() takes it, then init() does.
_runtime_lock = threading.RLock()


def init(
    storage: str | os.PathLike[str] | None = None,
    *,
    loop: LoopMode = "auto",
    clock: Clock | None = None,
    executor: object = None,
    executors: Mapping[str, object] | None = None,
) -> Runtime | ClientRuntime:
    """Open the store and set how the engine runs; optional (the first call makes one).

    Calling it again with another store closes the previous runtime (its runs stay
    RESUMABLE) once the new store is open; if the new store cannot be opened, nothing
    changes: the current runtime stays current and open, and its runs keep running. With
    the same arguments it returns the current one; with the same store and other
    options it closes the current runtime first (a store has one runtime per process).
    Threads that call it at once get one runtime per store.

    If another process owns the store (a kernel running workflows on it), this process
    becomes its client: the returned ``ClientRuntime`` forwards ``list_all``,
    ``get_status``, ``get_output``, ``get_metadata``, ``sql``, ``send_event(s)`` and
    ``cancel`` to the owner, and ``runtime.handle(workflow_id)`` gives a live view of one
    of its runs; ``run`` and ``resume`` raise ``StoreOwnedElsewhereError``. Once the owner
    has exited, call ``init`` again to own the store here.

    Args:
        storage: The DuckDB file (default: ``$EVKIT_STORAGE``, else ``evkit.duckdb`` in
            the working directory).
        loop: ``"auto"`` runs the engine on the loop already running in this thread (the
            kernel's, in a notebook) or, without one, on a loop in a background thread;
            ``"thread"`` always uses the background thread, so waits, timers and widgets
            keep going while a cell computes.
        clock: The clock timers use (``evkit.FakeClock()`` in tests).
        executor: Where step bodies run: ``"local"`` (a thread pool, the default), a
            ``dask.distributed.Client`` or scheduler address (``"tcp://host:8786"``),
            ``"ray"`` or ``"ray://host:port"``, or a ``StepExecutor`` (see
            ``evkit.executors.resolve_executor`` and docs/cluster.md).
        executors: More executors by name, for steps that choose one with
            ``@workflow.step(executor=name)`` (``"local"`` is always there).

    Returns:
        The runtime (a ``ClientRuntime`` where another process owns the store); use it
        as a context manager to close the store at the end.

    Raises:
        StoreLockedError: Another process has the file open and serves no other process
            (it wrote no owner file), or a ``Runtime`` made directly in this process has.
        OwnerUnreachableError: The owner file names a process that does not answer.
        NotAStoreError: The file is not an evkit store.
        StoreVersionError: The store is from a newer evkit.
        StoreError: The file cannot be opened (its directory does not exist, or the path
            is a directory).
        ClusterConnectionError: A cluster address cannot be reached (the message names it).
    """
    path = os.path.abspath(os.fspath(storage or os.environ.get("EVKIT_STORAGE") or DEFAULT_STORAGE))
    # Held while the runtime is made, so that threads starting evkit together get one
    # runtime (the first one asked for), never one each on the same file.
    with _runtime_lock:
        return _init_locked(path, loop=loop, clock=clock, executor=executor, executors=executors)


def _init_locked(
    path: str,
    *,
    loop: LoopMode,
    clock: Clock | None,
    executor: object,
    executors: Mapping[str, object] | None,
) -> Runtime | ClientRuntime:
    global _runtime
    current = _runtime if _runtime is not None and not _runtime.closed else None
    same_store = current is not None and current.store_key == os.path.realpath(path)
    unchanged = clock is None and executor is None and not executors
    owner = isinstance(current, Runtime)
    if owner and current is not None and same_store and current.loop_mode == loop and unchanged:
        return current
    # A client asks again each time: the owner may have gone, and then this process owns it.
    # Connect to clusters before touching the current runtime: a bad address leaves it open.
    default_executor = resolve_executor(executor)
    named = {name: resolve_executor(spec, name=name) for name, spec in (executors or {}).items()}
    if current is not None and same_store:
        # The file has one runtime at a time: the old one must go before the new one opens.
        _runtime = None
        current.close()
        current = None
    # Another store opens before the current one closes: if it cannot be opened (no such
    # directory, held by another process, not a store), the current runtime stays, with
    # its runs.
    runtime: Runtime | ClientRuntime
    runtime = open_or_connect(
        path, lambda: Runtime(path, loop=loop, clock=clock, executor=default_executor, executors=named)
    )
    if isinstance(runtime, Runtime):
        _serve_now(runtime, loop)
    _runtime = runtime
    if current is not None:
        current.close()
    return runtime


def _serve_now(runtime: Runtime, loop: LoopMode) -> None:
    # Start the engine (and with it the store's control endpoint) now, so other processes
    # can use the store at once -- where this does not change which loop the engine gets:
    # with no running loop in "auto" mode, the first call decides (it may come from one).
    if loop == "thread" or running_loop() is not None:
        runtime.engine()


def shutdown() -> None:
    """Close the current runtime, if any: runs still executing stay RESUMABLE."""
    global _runtime
    with _runtime_lock:
        current, _runtime = _runtime, None
    if current is not None:
        current.close()


def get_runtime() -> Runtime:
    """The current runtime, made with the defaults if ``init`` was not called.

    Threads that call it (or any evkit function) at once before ``init`` get one runtime.

    Raises:
        StoreError: The default store cannot be opened (see :func:`init`).
        StoreOwnedElsewhereError: Another process owns the store: this process is its
            client (``init`` returns the ``ClientRuntime``), and has no engine.
    """
    current = _current_runtime()
    if isinstance(current, ClientRuntime):
        raise current.refusal("use the engine (get_runtime)")
    return current


def runtime_or_client() -> Runtime | ClientRuntime:
    """The current runtime, or the ``ClientRuntime`` where another process owns the store.

    Made with the defaults if ``init`` was not called.

    Raises:
        StoreError: The default store cannot be opened (see :func:`init`).
    """
    return _current_runtime()


def _current_runtime() -> Runtime | ClientRuntime:
    current = _runtime
    if current is not None and not current.closed:
        return current
    with _runtime_lock:
        current = _runtime
        if current is not None and not current.closed:
            return current  # another thread made it while this one waited
        return init()


def plot_timeline(workflow_id: str, **kwargs: object) -> object:
    """Draw a run's steps and each event's wait/checkpoint/commit as bars on a time axis.

    Reads the store, so it also works for a run finished in an earlier kernel.

    Raises:
        ImportError: matplotlib is not installed (``pip install evkit[notebook]``).
        WorkflowNotFoundError: The store has no such run.
    """
    return draw_timeline(_check_id(workflow_id), **kwargs)


# ---------------------------------------------------------------------- starting runs


def _new_workflow_id(node: StepNode) -> str:
    suffix = f".{uuid.uuid4().hex[:12]}"
    return node.name[: MAX_WORKFLOW_ID_CHARS - len(suffix)] + suffix


def _check_new_id(workflow_id: object) -> str:
    workflow_id = _check_id(workflow_id)
    if len(workflow_id) > MAX_WORKFLOW_ID_CHARS:
        raise ValueError(
            f"`workflow_id` must have at most {MAX_WORKFLOW_ID_CHARS} characters, got {len(workflow_id)} "
            f"({workflow_id[:40]!r}...): it is part of the run's event URLs. Pass a shorter `workflow_id`."
        )
    return workflow_id


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise TypeError(f"`key` must be a non-empty str, got {key!r}.")
    if len(key) > MAX_EVENT_KEY_CHARS:
        raise ValueError(
            f"`key` must have at most {MAX_EVENT_KEY_CHARS} characters, got {len(key)} ({key[:40]!r}...). "
            "Use a shorter key."
        )
    return key


def _check_id(workflow_id: object, argument: str = "workflow_id") -> str:
    if not isinstance(workflow_id, str):
        raise TypeError(f"`{argument}` must be a str, got {type(workflow_id).__qualname__} {workflow_id!r}.")
    if not workflow_id:
        raise ValueError(f"`{argument}` must not be empty.")
    return workflow_id


def _start(
    node: StepNode,
    workflow_id: str | None,
    metadata: Mapping[str, object] | None,
    repoll: Iterable[str] = (),
) -> RunHandle:
    if not isinstance(node, StepNode):
        raise TypeError(
            f"run() needs a step node (fn.step(...) or wait_for_event(...)), got {type(node).__qualname__}."
        )
    if metadata is not None and codec.to_json(dict(metadata)) is None:
        raise ValueError(f"`metadata` must be a JSON-serializable dict, got {metadata!r}.")
    workflow_id = _check_new_id(workflow_id) if workflow_id is not None else _new_workflow_id(node)
    dag = flatten(node)
    request = RerunRequest(repoll=tuple(_names(repoll, "repoll")))
    # Unknown names fail here, at the call, before anything is stored or started.
    resolve_step_names(dag, request.repoll, argument="repoll", workflow_id=workflow_id, kind="event")
    # The code digests now, at the user's call: what their names hold now is the code they mean.
    codes = dag_codes(dag)
    runtime = _current_runtime()
    if isinstance(runtime, ClientRuntime):
        raise runtime.refusal("start", workflow_id)
    active = runtime.call_soon(
        lambda engine: engine.start(workflow_id, dag, metadata=metadata, codes=codes, rerun=request)
    )
    _wait_registered(runtime, active)
    return RunHandle(runtime, active)


def _names(names: object, argument: str) -> list[str]:
    # `object`: callers need not obey the types.
    if isinstance(names, str):
        raise TypeError(f"`{argument}` must be a list of step names (ids or `name=`): write [{names!r}].")
    if not isinstance(names, Iterable):
        raise TypeError(f"`{argument}` must be a list of step names (ids or `name=`), got {names!r}.")
    return [str(name) if isinstance(name, str) else name for name in names]


def fork(
    workflow_id: str,
    new_workflow_id: str,
    *,
    node: StepNode | None = None,
    rerun: Iterable[str] = (),
    repoll: Iterable[str] = (),
) -> RunHandle:
    """Start a new run from a copy of another run's checkpoints: for what-if analysis.

    The new run ``new_workflow_id`` starts with every checkpoint of run ``workflow_id``
    (its events too: they are never polled again unless named in ``repoll``), then runs
    ``node``'s DAG compared with them as ``node.run(workflow_id=...)`` does (without
    ``node``, the stored DAG), running again the steps named in ``rerun`` and everything
    downstream of them. The source run is not changed.

    Args:
        workflow_id: The run to copy.
        new_workflow_id: The new run's id (not in the store yet).
        node: The DAG to run; ``None`` runs the source's stored DAG.
        rerun: Function steps (ids or ``name=``) to run again though unchanged.
        repoll: Event steps (ids or ``name=``) to poll again.

    Returns:
        The new run's handle (``handle.plan`` says what it reuses and runs again).

    Raises:
        WorkflowNotFoundError: The store has no run ``workflow_id``.
        RunStateError: The store already has a run ``new_workflow_id``, or it is running.
        ValueError: A name in ``rerun`` or ``repoll`` is not a step of the DAG (the
            message lists them); ``new_workflow_id`` is too long.
        TypeError: ``node`` is not a step node, or ``rerun``/``repoll`` is a str.
    """
    source = _check_id(workflow_id)
    new_id = _check_new_id(_check_id(new_workflow_id, "new_workflow_id"))
    if node is not None and not isinstance(node, StepNode):
        raise TypeError(
            f"fork(): `node` must be a step node (fn.step(...)) or None, got {type(node).__qualname__}."
        )
    request = RerunRequest(
        repoll=tuple(_names(repoll, "repoll")), rerun=tuple(_names(rerun, "rerun")), fork_from=source
    )
    dag = flatten(node) if node is not None else None
    codes = None
    if dag is not None:
        resolve_step_names(dag, request.repoll, argument="repoll", workflow_id=new_id, kind="event")
        resolve_step_names(dag, request.rerun, argument="rerun", workflow_id=new_id, kind="function")
        codes = dag_codes(dag)
    runtime = _current_runtime()
    if isinstance(runtime, ClientRuntime):
        raise runtime.refusal("start", new_id)
    active = runtime.call_soon(lambda engine: engine.start(new_id, dag, codes=codes, rerun=request))
    _wait_registered(runtime, active)
    return RunHandle(runtime, active)


def _wait_registered(runtime: Runtime, active: ActiveRun) -> None:
    # From a thread that may block, return only once the run is durably in the store, so a
    # script that exits right after run_async leaves a RESUMABLE run, not nothing; if it
    # could not be stored, raise here rather than hand out a handle of a run that never
    # started. On the engine's own loop (a notebook cell) we cannot block: it is
    # registered within ms, and the handle reports a failure (the log too, in case nobody
    # awaits the handle).
    if runtime.on_engine_loop:
        active.task.add_done_callback(lambda _: _log_unregistered(runtime, active))
        return
    active.registered.wait()
    error = active.registration_error
    if error is None:
        return
    if isinstance(error, StoreError):
        # The store's own message says what to do about the store.
        raise type(error)(
            f"Run {active.workflow_id!r} could not be registered in store {runtime.storage!r}, so "
            f"it was not started (nothing of it was stored): {error}",
            path=runtime.storage,
        ) from error
    if isinstance(error, TypeError):  # from pickling the DAG (codec.dumps)
        raise TypeError(
            f"Run {active.workflow_id!r} could not be registered in store {runtime.storage!r}, so "
            f"it was not started: its definition cannot be stored ({error}). Give its steps "
            "picklable arguments."
        ) from error
    raise error


def _log_unregistered(runtime: Runtime, active: ActiveRun) -> None:
    if active.registration_error is not None:
        logger.warning(
            "evkit run %r could not be registered in store %r, so it was not started: %s",
            active.workflow_id,
            runtime.storage,
            active.registration_error,
        )


def run_async(
    node: StepNode,
    *,
    workflow_id: str | None = None,
    metadata: Mapping[str, object] | None = None,
    repoll: Iterable[str] = (),
) -> RunHandle:
    """Start a workflow and return its handle at once (the cell returns immediately).

    A ``workflow_id`` that the store already has is re-run: the DAG of ``node`` is
    compared with the stored one, step id by step id. Steps whose code and inputs are
    unchanged reuse their checkpoints (a finished unchanged run returns its stored
    output); changed steps run again with everything downstream of them. A checkpointed
    event is never polled again unless its step is named in ``repoll``; steps the DAG no
    longer has keep their rows, marked superseded. ``handle.plan`` (and one log line) say
    what is reused and what runs again, and why. ``workflow.resume(id)`` runs the stored
    code instead. It returns once the run is registered in the store (on the engine's
    own loop, e.g. in a notebook cell in the default mode, it cannot wait, and the handle
    reports it).

    Args:
        node: The DAG's output step.
        workflow_id: The run's id (default: a new one).
        metadata: JSON-serializable data stored with the run.
        repoll: Event steps (ids or ``name=``) whose checkpointed event is replaced by a
            new poll; the old event stays in the store, superseded.

    Raises:
        RunStateError: A run with this id is already running in this process.
        ValueError: ``metadata`` is not JSON-serializable, ``workflow_id`` is longer
            than ``MAX_WORKFLOW_ID_CHARS`` (200 characters), or ``repoll`` names a step
            that is not an event step of the DAG (the message lists them).
        StoreError: The run could not be registered in the store (the message names the
            run and the store); it was not started.
        TypeError: The run's definition (a step argument) cannot be pickled; it was not
            started.
    """
    return _start(node, workflow_id, metadata, repoll)


def run(
    node: StepNode,
    *,
    workflow_id: str | None = None,
    metadata: Mapping[str, object] | None = None,
    repoll: Iterable[str] = (),
) -> object:
    """Run a workflow to the end and return its output (blocks; works in a notebook cell).

    A ``workflow_id`` the store already has is re-run as :func:`run_async` says: what
    is unchanged is reused, checkpointed events are not polled again (unless named in
    ``repoll``), and what changed runs again with its downstream.

    Raises:
        StepFailedError: A step failed (``__cause__`` is its error); a
            ``WorkflowExecutionError``.
        WorkflowCancellationError: The run was cancelled meanwhile.
        RunStateError: A run with this id is already running in this process.
        ValueError: ``workflow_id`` is longer than ``MAX_WORKFLOW_ID_CHARS`` (200 characters),
            or ``repoll`` names a step that is not an event step of the DAG.
        StoreError: The run could not be registered in the store; it was not started.
    """
    return _start(node, workflow_id, metadata, repoll).result()


class _Runner:
    """Lets ``node.run()`` / ``node.run_async()`` call this module (registered below)."""

    def run(
        self,
        node: StepNode,
        *,
        workflow_id: str | None,
        metadata: Mapping[str, object] | None,
        repoll: Iterable[str] = (),
    ) -> object:
        return run(node, workflow_id=workflow_id, metadata=metadata, repoll=repoll)

    def run_async(
        self,
        node: StepNode,
        *,
        workflow_id: str | None,
        metadata: Mapping[str, object] | None,
        repoll: Iterable[str] = (),
    ) -> RunHandle:
        return run_async(node, workflow_id=workflow_id, metadata=metadata, repoll=repoll)


set_runner(_Runner())


def resume_async(workflow_id: str) -> RunHandle:
    """Resume a run from its checkpoints and return its handle at once (crash recovery).

    Committed steps and events are not run again; an event checkpointed but not committed
    gets ``event_checkpointed`` again; everything else runs, with the code stored with
    the run (a fresh process needs no definitions). When this process defines a step
    still to run differently, it logs a warning naming the step: ``node.run(workflow_id=
    ...)`` runs the new code. A finished run's handle gives its stored output.

    Raises:
        RunStateError: The run is already running in this process.
        WorkflowNotResumableError: (from the handle) the id is unknown or the run was cancelled.
        StoreError: The store could not record the resume; the run was not started.
    """
    workflow_id = _check_id(workflow_id)
    runtime = _current_runtime()
    if isinstance(runtime, ClientRuntime):
        raise runtime.refusal("resume", workflow_id)
    active = runtime.call_soon(lambda engine: engine.start(workflow_id, None))
    _wait_registered(runtime, active)
    return RunHandle(runtime, active)


def resume(workflow_id: str) -> object:
    """Resume a run and block until it ends; return its output.

    Raises:
        WorkflowNotResumableError: The id is unknown, or the run was cancelled.
        StepFailedError: A step failed again (a ``WorkflowExecutionError``).
    """
    return resume_async(workflow_id).result()


def resume_all(include_failed: bool = False) -> list[tuple[str, RunHandle]]:
    """Resume every RESUMABLE run (and FAILED ones with ``include_failed``).

    Returns:
        ``(workflow_id, handle)`` for each run resumed.
    """
    wanted = {WorkflowStatus.RESUMABLE} | ({WorkflowStatus.FAILED} if include_failed else set())
    return [(wid, resume_async(wid)) for wid, status in list_all() if status in wanted]


def cancel(workflow_id: str) -> WorkflowStatus:
    """Cancel a run unless it already finished; return the status it ends with.

    A live run's waits are cancelled (cleanup hooks awaited) and CANCELED is recorded; a
    RESUMABLE run is marked CANCELED. A finished run is left as it is (as Ray's
    ``workflow.cancel`` does not raise for it): its status, output and error stay, and
    the returned status says how it had ended. A cancel that races the end of a live run
    either wins (CANCELED) or loses (the run's own SUCCESSFUL or FAILED); the store,
    ``get_output`` and the run's handle always agree with what it returns.

    Returns:
        ``WorkflowStatus.CANCELED`` if the run is cancelled (now or earlier);
        ``SUCCESSFUL`` or ``FAILED`` if it had already finished.

    Raises:
        WorkflowNotFoundError: The store has no such run.
    """
    workflow_id = _check_id(workflow_id)
    runtime = _current_runtime()
    if isinstance(runtime, ClientRuntime):
        return WorkflowStatus(runtime.call("cancel", workflow_id=workflow_id))
    return runtime.call(lambda engine: engine.cancel(workflow_id))


def delete(workflow_id: str) -> None:
    """Delete a run and all its checkpoints from the store.

    Raises:
        WorkflowStillActiveError: The run is running; cancel it first.
        WorkflowNotFoundError: The store has no such run.
    """
    workflow_id = _check_id(workflow_id)
    runtime = _current_runtime()
    if isinstance(runtime, ClientRuntime):
        raise runtime.refusal("delete", workflow_id)
    runtime.call(lambda engine: engine.delete(workflow_id))


def get_status(workflow_id: str) -> WorkflowStatus:
    """The run's status (RESUMABLE if the store says running but nothing here runs it).

    Raises:
        TypeError: ``workflow_id`` is not a str.
        WorkflowNotFoundError: The store has no such run.
    """
    workflow_id = _check_id(workflow_id)

    runtime = _current_runtime()
    if isinstance(runtime, ClientRuntime):
        return WorkflowStatus(runtime.call("get_status", workflow_id=workflow_id))
    return runtime.call(lambda engine: operations.status(engine, workflow_id))


def get_output(workflow_id: str) -> object:
    """The run's output: waits if it is running here, else loads it from the store.

    Raises:
        WorkflowNotFoundError: The store has no such run.
        StepFailedError: The run failed (``__cause__`` is the step's error): the same error,
            message and fields as the live run raised; a ``WorkflowExecutionError``.
        WorkflowCancellationError: The run was cancelled.
        RunStateError: The run is RESUMABLE: resume it to get an output.
    """
    workflow_id = _check_id(workflow_id)

    runtime = _current_runtime()
    if isinstance(runtime, ClientRuntime):
        return _remote_output(runtime, workflow_id)
    return runtime.call(lambda engine: operations.output(engine, workflow_id))


def _remote_output(runtime: ClientRuntime, workflow_id: str) -> object:
    # A live run's output comes when it ends: follow its changes (long polls), rather
    # than hold one request open for as long as the run takes.
    return RemoteRunHandle(runtime, workflow_id).result()


def get_metadata(workflow_id: str, step_id: str | None = None) -> dict[str, object]:
    """Ray-style metadata of a run, or of one of its steps.

    Returns:
        For a run: ``{"workflow_id", "status", "user_metadata", "stats": {"start_time",
        "end_time"}}``; for a step: ``{"workflow_id", "step_id", "state", "attempts",
        "error", "step_options", "user_metadata", "stats"}`` (``error``: the step's last
        error as one line, or ``None``).

    Raises:
        WorkflowNotFoundError: The run (or the step in it) is unknown.
    """
    workflow_id = _check_id(workflow_id)

    runtime = _current_runtime()
    if isinstance(runtime, ClientRuntime):
        metadata: dict[str, object] = runtime.call("get_metadata", workflow_id=workflow_id, step_id=step_id)
        return metadata
    return runtime.call(lambda engine: operations.metadata(engine, workflow_id, step_id))


def list_all(
    status_filter: WorkflowStatus | str | Iterable[WorkflowStatus | str] | None = None,
) -> list[tuple[str, WorkflowStatus]]:
    """Every run in the store with its status, oldest first.

    Args:
        status_filter: A status, a status name, or a set of either.

    Raises:
        TypeError: ``status_filter`` is something else.
        ValueError: A status name is unknown.
    """
    wanted = _status_set(status_filter)
    runtime = _current_runtime()
    if isinstance(runtime, ClientRuntime):
        runs = statuses(runtime.call("list_all"))
    else:
        runs = runtime.call(lambda engine: engine.statuses())
    return [(wid, status) for wid, status in runs if wanted is None or status in wanted]


def _status_set(value: object) -> set[WorkflowStatus] | None:
    if value is None:
        return None
    if isinstance(value, (WorkflowStatus, str)):
        value = [value]
    if not isinstance(value, Iterable):
        raise TypeError(
            f"`status_filter` must be a WorkflowStatus, a status name or a set of them, got {value!r}."
        )
    result = set()
    for item in value:
        try:
            result.add(WorkflowStatus(item))
        except ValueError:
            known = ", ".join(s.value for s in WorkflowStatus)
            raise ValueError(f"`status_filter` has unknown status {item!r}; known: {known}.") from None
    return result


# ---------------------------------------------------------------------- events


@step(name="sleep_deadline")
async def _sleep_deadline(seconds: float) -> float:
    return current_clock().now() + seconds


def sleep(seconds: float, *, name: str | None = None) -> EventNode:
    """An event step that finishes ``seconds`` after it starts (a durable timer).

    The deadline is fixed when the step starts and kept in the store: after a restart the
    timer waits only what is left.

    Args:
        seconds: How long to wait, from when the step starts.
        name: What the views call the step, and its id in the run (made unique); without
            it they show the deadline as a local time and the id is ``sleep``.

    Raises:
        ValueError: ``seconds`` is negative or not a number.
        WorkflowDefinitionError: ``name`` is empty or holds a '/'.
    """
    if not isinstance(seconds, (int, float)) or seconds != seconds or seconds < 0:  # type: ignore[redundant-expr]  # callers need not obey the types
        raise ValueError(f"`seconds` must be a number >= 0, got {seconds!r}.")
    node = wait_for_event(TimerListener, _sleep_deadline.step(float(seconds)), name=name)
    node.default_name = "sleep"
    return node


def wait_for_any(
    branches: Mapping[str, StepNode] | Sequence[StepNode],
    *,
    timeout_seconds: float | None = None,
    default: object = NO_DEFAULT,
) -> EventNode:
    """An event step that finishes with the first of several events: ``(name, event)``.

    ``workflow.wait_for_any({"approve": a, "reject": r, "expired": workflow.sleep(3600)})``
    waits on every branch at once. The first event received wins: it alone is
    checkpointed and committed (with its listener's ``event_checkpointed``); the other
    waits are cancelled (their ``poll_cancelled`` hooks run), and an event a loser
    received meanwhile is neither checkpointed nor committed, so its source keeps it
    (an inbox event stays for the next wait on its key, a Redis entry stays pending).
    A ``workflow.sleep(seconds)`` branch counts its seconds from when this wait starts.

    Args:
        branches: Event steps made by ``wait_for_event`` or ``workflow.sleep``, named
            by the keys of a dict, or a list (named by their indexes). Their arguments
            may be upstream steps' results.
        timeout_seconds: Give up after this long, as ``wait_for_event`` does.
        default: The value on timeout instead of raising (not a ``(name, event)`` pair).

    Returns:
        A node whose value is ``(name, event)`` of the winning branch.

    Raises:
        WorkflowDefinitionError: ``branches`` is empty or not a dict or list, a name is
            not a non-empty str, a branch is not an event step, has its own
            ``timeout_seconds`` or is a ``wait_for_any`` itself, or ``timeout_seconds`` is
            not positive.
    """
    return any_of(branches, timeout_seconds=timeout_seconds, default=default, sleep_seconds=_sleep_seconds)


def _sleep_seconds(node: EventNode) -> float | None:
    """The seconds of a ``sleep(seconds)`` node; ``None`` for any other wait."""
    if node.listener is TimerListener and len(node.args) == 1 and not node.kwargs:
        deadline = node.args[0]
        if isinstance(deadline, StepNode) and deadline.func is _sleep_deadline.func:
            return float(deadline.args[0])  # type: ignore[arg-type]
    return None


def send_event(workflow_id: str, key: str, payload: object = None, *, event_id: str | None = None) -> str:
    """Send an event to a run's ``ManualListener`` wait on ``key``; returns its event id.

    The event is stored durably before this returns. Sent before the step waits, it is
    kept and delivered when it does; sending the same ``event_id`` again delivers it once
    (and returns only once the first copy is stored, even if that send is still running).

    Raises:
        WorkflowNotFoundError: The store has no such run.
        PayloadError: The payload cannot be pickled (nothing is stored); also a TypeError.
        AnswerError: A ``workflow.ask`` step waits on ``key`` and the payload does not
            fit its model (nothing is stored); also a ValueError.
        ValueError: ``key`` is longer than ``MAX_EVENT_KEY_CHARS`` (200 characters).
    """
    workflow_id = _check_id(workflow_id)
    key = _check_key(key)
    try:
        codec.dumps(payload)
    except TypeError as exc:
        raise PayloadError(
            f"send_event({workflow_id!r}, {key!r}): the payload of type {type(payload).__qualname__} "
            f"cannot be stored ({exc.__cause__ or exc}); send picklable data. Nothing was stored."
        ) from None

    # Who answers (an ask step's answer records it) is this process's user, also when the
    # owner of the store stores the event.
    from evkit.listeners.ask import notebook_user  # typed questions load on first use (evkit.workflow)

    answered_by = notebook_user()
    runtime = _current_runtime()
    if isinstance(runtime, ClientRuntime):
        # An id made here, so that a send the owner's exit interrupted can be repeated safely.
        sent: str = runtime.call(
            "send_event",
            workflow_id=workflow_id,
            key=key,
            payload=payload,
            event_id=event_id or new_event_id(),
            answered_by=answered_by,
        )
        return sent
    return runtime.call(
        lambda engine: operations.send(engine, workflow_id, key, payload, event_id, answered_by=answered_by)
    )


def send_events(workflow_id: str, events: Iterable[tuple[str, object]]) -> list[str]:
    """Send many ``(key, payload)`` events to a run at once; returns their event ids.

    Like :func:`send_event` called for each pair, but every event is stored in one
    transaction, so 100,000 events cost about as much as one. Use it to feed many waits.

    Raises:
        WorkflowNotFoundError: The store has no such run.
        TypeError: A key is not a non-empty str, or a payload cannot be pickled (nothing
            is stored).
        ValueError: A key is longer than ``MAX_EVENT_KEY_CHARS`` (200 characters).
    """
    workflow_id = _check_id(workflow_id)
    items = list(events)
    for i, item in enumerate(items):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and item[0]):  # type: ignore[redundant-expr]
            raise TypeError(
                f"send_events({workflow_id!r}, ...): item {i} must be a (key, payload) tuple with "
                f"a non-empty str key, got {item!r}. Nothing was stored."
            )
        if len(item[0]) > MAX_EVENT_KEY_CHARS:
            raise ValueError(
                f"send_events({workflow_id!r}, ...): the key of item {i} has {len(item[0])} characters; "
                f"keys may have at most {MAX_EVENT_KEY_CHARS}. Nothing was stored."
            )

    runtime = _current_runtime()
    if isinstance(runtime, ClientRuntime):
        ids: list[str] = runtime.call("send_events", workflow_id=workflow_id, items=items)
        return ids
    # While you wait here the engine hands every event to its wait and checkpoints it,
    # within this call: a big batch does that with fewer GC passes (see fewer_gc_passes).
    with fewer_gc_passes(len(items) >= BIG_RUN_STEPS):
        return runtime.call(lambda engine: operations.send_many(engine, workflow_id, items))


# ---------------------------------------------------------------------- SQL


def sql(query: str, params: Iterable[object] | Mapping[str, object] | None = None) -> duckdb.DuckDBPyRelation:
    """Run SQL on the store; returns a DuckDB relation.

    In the process that owns the store the relation reads the store itself. In a client
    (another process owns the store) the owner runs the query, which must be one SELECT
    statement, and the relation is built on its Arrow result: ``.df()``, ``.fetchall()``
    and further SQL on it work the same.

    Query the documented views ``workflows``, ``steps``, ``events`` and ``inbox_events``
    (see docs/store.md). Each thread reads through its own cursor, a consistent snapshot
    of what is committed.

    Raises:
        StoreError: The query failed (the message has DuckDB's explanation), or, in a
            client, it is not a single SELECT statement (nothing was changed).
        OwnerUnreachableError: In a client: the owner exited, or does not answer.
    """
    runtime = _current_runtime()
    if isinstance(runtime, ClientRuntime):
        return runtime.sql(query, params)
    cursor = runtime.writer.thread_cursor()
    with store_errors(runtime.storage, "running SQL"):
        return cursor.sql(query, params=params)
