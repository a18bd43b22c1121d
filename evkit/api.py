"""The functions users call (``init``, ``run``, ``get_status``, ``sql``...).

``run_async`` returns a :class:`~evkit.handle.RunHandle`. The functions work from any
thread and any loop; the runtime (``evkit.runtime``) carries each call to the engine's
loop. Ray Workflows' names and behaviour are kept where they apply.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from evkit import codec
from evkit.context import current_clock
from evkit.dag import NO_DEFAULT, EventNode, StepNode, any_of, flatten, set_runner, step, wait_for_event
from evkit.errors import (
    PayloadError,
    RunStateError,
    StoreError,
    WorkflowCancellationError,
    WorkflowNotFoundError,
)
from evkit.execution import failure_from_store
from evkit.executors import resolve_executor
from evkit.gcscope import BIG_RUN_STEPS, fewer_gc_passes
from evkit.handle import RunHandle, draw_timeline
from evkit.listeners.base import TimerListener
from evkit.model import MAX_EVENT_KEY_CHARS, MAX_WORKFLOW_ID_CHARS, WorkflowStatus
from evkit.runtime import LoopMode, Runtime
from evkit.store.connection import store_errors
from evkit.store.reads import step_metadata

if TYPE_CHECKING:
    import duckdb

    from evkit.clock import Clock
    from evkit.engine import ActiveRun, Engine

DEFAULT_STORAGE = "evkit.duckdb"

logger = logging.getLogger("evkit")

_runtime: Runtime | None = None
# Reentrant: get_runtime() takes it, then init() does.
_runtime_lock = threading.RLock()


def init(
    storage: str | os.PathLike[str] | None = None,
    *,
    loop: LoopMode = "auto",
    clock: Clock | None = None,
    executor: object = None,
    executors: Mapping[str, object] | None = None,
) -> Runtime:
    """Open the store and set how the engine runs; optional (the first call makes one).

    Calling it again with another store closes the previous runtime (its runs stay
    RESUMABLE) once the new store is open; if the new store cannot be opened, nothing
    changes: the current runtime stays current and open, and its runs keep running. With
    the same arguments it returns the current one; with the same store and other
    options it closes the current runtime first (a store has one runtime per process).
    Threads that call it at once get one runtime per store.

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
        The runtime; use it as a context manager to close the store at the end.

    Raises:
        StoreLockedError: Another process has the file open, or a ``Runtime`` made
            directly in this process has.
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
) -> Runtime:
    global _runtime
    current = _runtime if _runtime is not None and not _runtime.closed else None
    same_store = current is not None and current.store_key == os.path.realpath(path)
    unchanged = clock is None and executor is None and not executors
    if current is not None and same_store and current.loop_mode == loop and unchanged:
        return current
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
    runtime = Runtime(path, loop=loop, clock=clock, executor=default_executor, executors=named)
    _runtime = runtime
    if current is not None:
        current.close()
    return runtime


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
    """
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


def _start(node: StepNode, workflow_id: str | None, metadata: Mapping[str, object] | None) -> RunHandle:
    if not isinstance(node, StepNode):
        raise TypeError(
            f"run() needs a step node (fn.step(...) or wait_for_event(...)), got {type(node).__qualname__}."
        )
    if metadata is not None and codec.to_json(dict(metadata)) is None:
        raise ValueError(f"`metadata` must be a JSON-serializable dict, got {metadata!r}.")
    workflow_id = _check_new_id(workflow_id) if workflow_id is not None else _new_workflow_id(node)
    dag = flatten(node)
    runtime = get_runtime()
    active = runtime.call_soon(lambda engine: engine.start(workflow_id, dag, metadata=metadata))
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
    node: StepNode, *, workflow_id: str | None = None, metadata: Mapping[str, object] | None = None
) -> RunHandle:
    """Start a workflow and return its handle at once (the cell returns immediately).

    A ``workflow_id`` that the store already has is resumed instead of started again.
    It returns once the run is registered in the store (on the engine's own loop, e.g. in
    a notebook cell in the default mode, it cannot wait, and the handle reports it).

    Raises:
        RunStateError: A run with this id is already running in this process.
        ValueError: ``metadata`` is not JSON-serializable, or ``workflow_id`` is longer
            than ``MAX_WORKFLOW_ID_CHARS`` (200 characters).
        StoreError: The run could not be registered in the store (the message names the
            run and the store); it was not started.
        TypeError: The run's definition (a step argument) cannot be pickled; it was not
            started.
    """
    return _start(node, workflow_id, metadata)


def run(
    node: StepNode, *, workflow_id: str | None = None, metadata: Mapping[str, object] | None = None
) -> object:
    """Run a workflow to the end and return its output (blocks; works in a notebook cell).

    Raises:
        StepFailedError: A step failed (``__cause__`` is its error); a
            ``WorkflowExecutionError``.
        WorkflowCancellationError: The run was cancelled meanwhile.
        RunStateError: A run with this id is already running in this process.
        ValueError: ``workflow_id`` is longer than ``MAX_WORKFLOW_ID_CHARS`` (200 characters).
        StoreError: The run could not be registered in the store; it was not started.
    """
    return _start(node, workflow_id, metadata).result()


class _Runner:
    """Lets ``node.run()`` / ``node.run_async()`` call this module (registered below)."""

    def run(
        self, node: StepNode, *, workflow_id: str | None, metadata: Mapping[str, object] | None
    ) -> object:
        return run(node, workflow_id=workflow_id, metadata=metadata)

    def run_async(
        self, node: StepNode, *, workflow_id: str | None, metadata: Mapping[str, object] | None
    ) -> RunHandle:
        return run_async(node, workflow_id=workflow_id, metadata=metadata)


set_runner(_Runner())


def resume_async(workflow_id: str) -> RunHandle:
    """Resume a run from its checkpoints and return its handle at once.

    Committed steps and events are not run again; an event checkpointed but not committed
    gets ``event_checkpointed`` again; everything else runs. A finished run's handle gives
    its stored output.

    Raises:
        RunStateError: The run is already running in this process.
        WorkflowNotResumableError: (from the handle) the id is unknown or the run was cancelled.
        StoreError: The store could not record the resume; the run was not started.
    """
    workflow_id = _check_id(workflow_id)
    runtime = get_runtime()
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
    return get_runtime().call(lambda engine: engine.cancel(workflow_id))


def delete(workflow_id: str) -> None:
    """Delete a run and all its checkpoints from the store.

    Raises:
        WorkflowStillActiveError: The run is running; cancel it first.
        WorkflowNotFoundError: The store has no such run.
    """
    workflow_id = _check_id(workflow_id)
    get_runtime().call(lambda engine: engine.delete(workflow_id))


def get_status(workflow_id: str) -> WorkflowStatus:
    """The run's status (RESUMABLE if the store says running but nothing here runs it).

    Raises:
        TypeError: ``workflow_id`` is not a str.
        WorkflowNotFoundError: The store has no such run.
    """
    workflow_id = _check_id(workflow_id)

    async def status(engine: Engine) -> WorkflowStatus:
        active = engine.active(workflow_id)
        if active is not None:
            return active.status
        stored = await engine.load(workflow_id)
        if stored is None:
            raise WorkflowNotFoundError(_not_found(workflow_id, engine), workflow_id=workflow_id)
        return engine.status_of(workflow_id, stored.status)

    return get_runtime().call(status)


def _not_found(workflow_id: str, engine: Engine) -> str:
    return (
        f"Run {workflow_id!r} is not in store {engine.writer.path!r}. "
        "List the known runs with workflow.list_all()."
    )


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

    async def output(engine: Engine) -> object:
        active = engine.active(workflow_id)
        if active is not None:
            try:
                return await asyncio.shield(active.task)
            except Exception:
                active.outcome_retrieved = True  # raised here: not logged as well
                raise
        stored = await engine.load(workflow_id)
        if stored is None:
            raise WorkflowNotFoundError(_not_found(workflow_id, engine), workflow_id=workflow_id)
        status = engine.status_of(workflow_id, stored.status)
        if status is WorkflowStatus.SUCCESSFUL:
            assert stored.output_blob is not None
            return codec.loads(stored.output_blob)
        if status is WorkflowStatus.FAILED:
            error = failure_from_store(workflow_id, stored.error_blob, stored.error_text)
            raise error from error.__cause__
        if status is WorkflowStatus.CANCELED:
            raise WorkflowCancellationError(f"Run {workflow_id!r} was cancelled.", workflow_id=workflow_id)
        raise RunStateError(
            f"Run {workflow_id!r} is {status.value} and has no output yet; resume it with "
            f"workflow.resume({workflow_id!r}).",
            workflow_id=workflow_id,
        )

    return get_runtime().call(output)


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

    async def metadata(engine: Engine) -> dict[str, object]:
        stored = await engine.load(workflow_id)
        if stored is None:
            raise WorkflowNotFoundError(_not_found(workflow_id, engine), workflow_id=workflow_id)
        status = engine.status_of(workflow_id, stored.status)
        user = json.loads(stored.user_metadata) if stored.user_metadata else {}
        if step_id is None:
            return {
                "workflow_id": workflow_id,
                "status": status.value,
                "user_metadata": user or {},
                "stats": {
                    "start_time": stored.created_at,
                    "end_time": stored.updated_at if status.is_final else None,
                },
            }
        stats = await engine.queue.read(step_metadata, workflow_id, step_id)
        dag = codec.loads(stored.dag_blob)
        flat = {s.step_id: s for s in dag.steps}  # type: ignore[attr-defined]
        if stats is None and step_id not in flat:
            raise WorkflowNotFoundError(
                f"Run {workflow_id!r} has no step {step_id!r}. Its steps: {', '.join(map(repr, flat))}.",
                workflow_id=workflow_id,
            )
        options = flat[step_id].options if step_id in flat else None
        return {
            "workflow_id": workflow_id,
            "step_id": step_id,
            "state": (stats or {}).get("state"),
            "attempts": (stats or {}).get("attempts", 0),
            "error": (stats or {}).get("error"),
            "step_options": {
                "max_retries": options.max_retries,
                "catch_exceptions": options.catch_exceptions,
                "retry_exceptions": bool(options.retry_exceptions),
            }
            if options
            else {},
            "user_metadata": dict(options.metadata) if options else {},
            "stats": {
                "start_time": (stats or {}).get("start_time"),
                "end_time": (stats or {}).get("end_time"),
            },
        }

    return get_runtime().call(metadata)


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
    runs = get_runtime().call(lambda engine: engine.statuses())
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

    async def send(engine: Engine) -> str:
        if engine.active(workflow_id) is None and await engine.load(workflow_id) is None:
            raise WorkflowNotFoundError(_not_found(workflow_id, engine), workflow_id=workflow_id)
        result = await engine.inbox.send(workflow_id, key, payload, event_id=event_id)
        return result.event_id

    return get_runtime().call(send)


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

    async def send(engine: Engine) -> list[str]:
        if engine.active(workflow_id) is None and await engine.load(workflow_id) is None:
            raise WorkflowNotFoundError(_not_found(workflow_id, engine), workflow_id=workflow_id)
        try:
            return await engine.inbox.send_many(workflow_id, items)
        except TypeError as exc:
            raise TypeError(
                f"send_events({workflow_id!r}, ...): a payload cannot be stored ({exc}); send "
                "picklable data. Nothing was stored."
            ) from None

    # While you wait here the engine hands every event to its wait and checkpoints it,
    # within this call: a big batch does that with fewer GC passes (see fewer_gc_passes).
    with fewer_gc_passes(len(items) >= BIG_RUN_STEPS):
        return get_runtime().call(send)


# ---------------------------------------------------------------------- SQL


def sql(query: str, params: Iterable[object] | Mapping[str, object] | None = None) -> duckdb.DuckDBPyRelation:
    """Run SQL on the store from the process that owns it; returns a DuckDB relation.

    Query the documented views ``workflows``, ``steps``, ``events`` and ``inbox_events``
    (see docs/store.md). Each thread reads through its own cursor, a consistent snapshot
    of what is committed.

    Raises:
        StoreError: The query failed (the message has DuckDB's explanation).
    """
    runtime = get_runtime()
    cursor = runtime.writer.thread_cursor()
    with store_errors(runtime.storage, "running SQL"):
        return cursor.sql(query, params=params)
