"""Step bodies on a Dask cluster: ``workflow.init(executor=client)`` or a scheduler address.

Each attempt is one Dask task (``retries=0``: evkit retries). Every client call runs on
the client's own loop, so the engine's loop never waits on the cluster; waits and
checkpoints stay in the kernel. ``distributed`` is imported only when this is used.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import re
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, final

from evkit.errors import ClusterConnectionError, WorkerLostError
from evkit.executors._remote import (
    Payload,
    check_reachable,
    kill_if_running,
    pack,
    run_payload,
    unpack,
)
from evkit.executors.base import StepCall

logger = logging.getLogger("evkit")
T = TypeVar("T")

#: Address schemes ``workflow.init(executor=...)`` treats as Dask scheduler addresses.
DASK_SCHEMES = ("tcp://", "tls://", "ws://", "wss://", "ucx://", "inproc://")
_DEFAULT_PORT = 8786


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            "Running steps on Dask needs the `distributed` package: pip install 'evkit[dask]'."
        ) from exc
    return distributed


@dataclass(slots=True)
class _Submission:
    """One attempt's Dask future, shared by the waiting and the cancelling coroutines."""

    future: Any = None
    cancelled: bool = False


@final
class DaskExecutor:
    """Runs step bodies as tasks on a Dask cluster.

    Pass it (or just the client, or the scheduler address) to ``workflow.init(executor=...)``.
    Each attempt of a step is one task with ``retries=0``; evkit does the retries, so the
    store shows each attempt. ``StepOptions.resources`` become the task's Dask worker
    ``resources=`` (a task asking for a resource no worker declares waits until one joins).

    Args:
        client: A ``distributed.Client`` (used, not closed), a ``distributed`` cluster
            object (``LocalCluster``...), or a scheduler address such as
            ``"tcp://10.0.0.5:8786"`` (this executor then owns the client it opens).
        name: The executor's name (what ``StepOptions.executor`` refers to).
        kill_worker_on_cancel: Dask cannot stop a task that already runs: cancelling a run
            releases its tasks, and a running body finishes on its worker with its result
            dropped. ``True`` also kills the worker process running the body (its nanny
            starts a new one), as Ray's force-cancel does; other tasks running on that
            worker are lost too (evkit retries its own as a lost worker).
        connect_timeout_seconds: How long to try to connect to an address.

    Raises:
        ClusterConnectionError: The scheduler address cannot be reached.
        TypeError: ``client`` is none of the accepted kinds.
        ImportError: ``distributed`` is not installed.
    """

    def __init__(
        self,
        client: object,
        *,
        name: str = "dask",
        kill_worker_on_cancel: bool = False,
        connect_timeout_seconds: float = 5.0,
    ) -> None:
        if connect_timeout_seconds <= 0:
            raise ValueError(f"`connect_timeout_seconds` must be > 0, got {connect_timeout_seconds!r}")
        distributed = _import_distributed()
        self.name = name
        self.kill_worker_on_cancel = kill_worker_on_cancel
        self._owns_client = not isinstance(client, distributed.Client)
        if isinstance(client, str):
            self.client = _connect(distributed, client, connect_timeout_seconds)
        elif isinstance(client, distributed.deploy.Cluster):
            self.client = distributed.Client(client, set_as_default=False)
        elif isinstance(client, distributed.Client):
            self.client = client
        else:
            raise TypeError(
                "DaskExecutor needs a distributed.Client, a Dask cluster or a scheduler address "
                f"('tcp://host:8786'), got {type(client).__qualname__}."
            )
        self.allowed_failures = self._read_allowed_failures()
        self._closed = False

    def __repr__(self) -> str:
        return f"<evkit.DaskExecutor name={self.name!r} scheduler={self.client.scheduler.address!r}>"

    def _read_allowed_failures(self) -> int | None:
        """How often the scheduler reruns a task whose worker died before it tells evkit."""
        if self.client.asynchronous:
            return None
        try:
            allowed = int(
                self.client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
            )
        except Exception:  # the scheduler may refuse to run code; this is only advice
            return None
        if allowed > 0:
            logger.warning(
                "The Dask scheduler at %s reruns a task whose worker died (allowed-failures=%d) "
                "before evkit hears of it; such reruns are not attempts in evkit's store. Set "
                "distributed.scheduler.allowed-failures=0 to have evkit retry and record each one.",
                self.client.scheduler.address,
                allowed,
            )
        return allowed

    # ------------------------------------------------------------------ running

    async def run(self, call: StepCall) -> object:
        """Run one attempt as a Dask task and return its result.

        Raises:
            WorkerLostError: The worker died (``KilledWorker``) or the connection was lost.
            StepTransportError: The function, an argument or the result cannot travel.
        """
        token = f"evkit-{_key_part(call.context.step_id)}-{uuid.uuid4().hex}"
        payload = pack(call, engine="dask", token=token)
        submission = _Submission()
        try:
            reply = await self._on_client_loop(self._submit_and_wait(payload, call, submission))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                await self._cancel_remote(submission)
                raise
            # Not our cancellation: the client's loop dropped the call (it is closing).
            raise WorkerLostError(
                f"Step {call.context.step_id!r} of run {call.context.workflow_id!r}: the Dask client "
                "stopped while the step ran on the cluster."
            ) from None
        return unpack(reply, call, engine="dask")

    def _on_client_loop(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """Run ``coro`` on the client's loop; awaitable from the running loop."""
        target = self.client.loop.asyncio_loop
        if target is asyncio.get_running_loop():  # an asynchronous client on this very loop
            return asyncio.ensure_future(coro)
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, target))

    async def _submit_and_wait(self, payload: Payload, call: StepCall, submission: _Submission) -> object:
        """On the client's loop: submit the task and gather its reply."""
        distributed = _import_distributed()
        if submission.cancelled:
            raise asyncio.CancelledError
        resources = {str(k): float(v) for k, v in call.options.resources.items()}
        future = self.client.submit(
            run_payload, payload, key=payload.token, pure=False, retries=0, resources=resources or None
        )
        submission.future = future
        step, run = call.context.step_id, call.context.workflow_id
        # Dask's gather leaves a task with an unretrieved error when it is cancelled: shield
        # it, and let the cancellation of the Dask future (_cancel_remote) end it instead.
        gathering = asyncio.ensure_future(self.client.gather(future, asynchronous=True))
        gathering.add_done_callback(_retrieve)
        try:
            return await asyncio.shield(gathering)
        except distributed.KilledWorker as exc:
            raise WorkerLostError(
                f"Step {step!r} of run {run!r}: the Dask worker running it died ({exc})."
            ) from exc
        except distributed.comm.CommClosedError as exc:
            raise WorkerLostError(
                f"Step {step!r} of run {run!r}: the connection to the Dask cluster was lost ({exc})."
            ) from exc
        except (distributed.client.FutureCancelledError, distributed.client.FuturesCancelledError) as exc:
            # Both subclass asyncio.CancelledError; evkit did not cancel this one.
            raise WorkerLostError(
                f"Step {step!r} of run {run!r}: its Dask task was cancelled outside evkit ({exc})."
            ) from None

    async def _cancel_remote(self, submission: _Submission) -> None:
        """Cancel the attempt's task (bounded wait; a failure is logged, not raised)."""
        submission.cancelled = True
        done, _ = await asyncio.wait(
            {self._on_client_loop(self._cancel_on_client_loop(submission))}, timeout=10
        )
        for future in done:
            if not future.cancelled() and future.exception() is not None:
                logger.warning("Cancelling a Dask task failed: %r", future.exception())

    async def _cancel_on_client_loop(self, submission: _Submission) -> None:
        future = submission.future
        if future is None or future.done():
            return
        # Cancel first: the scheduler then never reruns it elsewhere when its worker dies.
        await self.client.cancel([future], force=True, asynchronous=True)
        if self.kill_worker_on_cancel:
            await self.client.run(
                kill_if_running, future.key, os.getpid(), on_error="ignore", asynchronous=True
            )

    async def aclose(self) -> None:
        """Close the client if this executor opened it (never the cluster itself)."""
        if self._closed:
            return
        self._closed = True
        if not self._owns_client:
            return
        if self.client.asynchronous:
            await self.client.close()
        else:
            await asyncio.to_thread(self.client.close)


def _connect(distributed: Any, address: str, timeout_seconds: float) -> Any:
    try:
        if address.startswith("tcp://"):
            check_reachable(
                address, default_port=_DEFAULT_PORT, timeout_seconds=timeout_seconds, what="Dask scheduler"
            )
            _probe_handshake(distributed, address, timeout_seconds)
        return distributed.Client(address, timeout=timeout_seconds, set_as_default=False)
    except (OSError, TimeoutError, concurrent.futures.TimeoutError) as exc:
        if isinstance(exc, ClusterConnectionError):
            raise
        raise ClusterConnectionError(
            f"Cannot connect to the Dask scheduler at {address!r} within {timeout_seconds:g} s ({exc}). "
            "Check that the scheduler runs and the address is right, or use executor='local'."
        ) from None


def _probe_handshake(distributed: Any, address: str, timeout_seconds: float) -> None:
    """Check that a Dask scheduler answers within the timeout.

    A server that accepts connections but never speaks makes ``Client(address,
    timeout=...)`` hang past its timeout (distributed 2026.8).
    """

    async def probe() -> None:
        comm = await asyncio.wait_for(
            distributed.comm.connect(address, timeout=timeout_seconds), timeout_seconds
        )
        comm.abort()

    # A thread of its own: init() may be called on a thread whose loop is running.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="evkit-dask-probe") as pool:
        pool.submit(asyncio.run, probe()).result()


def _retrieve(task: asyncio.Future[object]) -> None:
    if not task.cancelled():
        task.exception()  # seen: the waiting coroutine reports it, or it was cancelled


def _key_part(step_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", step_id)[:60]
