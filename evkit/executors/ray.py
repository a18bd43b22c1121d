"""Step bodies on Ray: ``workflow.init(executor="ray")`` (a local Ray) or ``"ray://host:port"``.

Each attempt is one Ray task with ``max_retries=0`` (evkit retries); the engine awaits
its ``ObjectRef`` on its own loop, so nothing blocks. Waits and checkpoints stay in the
kernel. ``ray`` is imported only when this is used.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any, final

from evkit.errors import ClusterConnectionError, WorkerLostError
from evkit.executors._remote import check_reachable, pack, run_payload, unpack
from evkit.executors.base import StepCall

logger = logging.getLogger("evkit")
_DEFAULT_CLIENT_PORT = 10001

# StepOptions.resources keys that are Ray task options rather than custom resources.
_RAY_OPTIONS = {
    "CPU": "num_cpus",
    "cpu": "num_cpus",
    "num_cpus": "num_cpus",
    "GPU": "num_gpus",
    "gpu": "num_gpus",
    "num_gpus": "num_gpus",
    "memory": "memory",
}


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError("Running steps on Ray needs the `ray` package: pip install 'evkit[ray]'.") from exc
    return ray


def ray_task_options(resources: Mapping[str, float]) -> dict[str, object]:
    """Map ``StepOptions.resources`` to Ray task options.

    ``CPU``/``GPU``/``memory`` (bytes) become ``num_cpus``/``num_gpus``/``memory``; any
    other key is a custom resource. Retries are always 0: evkit retries.
    """
    options: dict[str, object] = {"max_retries": 0, "retry_exceptions": False}
    custom: dict[str, float] = {}
    for key, amount in resources.items():
        option = _RAY_OPTIONS.get(key)
        if option is None:
            custom[key] = float(amount)
        elif option == "memory":
            options["memory"] = int(amount)
        else:
            options[option] = float(amount)
    if custom:
        options["resources"] = custom
    return options


@final
class RayExecutor:
    """Runs step bodies as Ray tasks.

    Pass ``"ray"`` or ``"ray://host:port"`` to ``workflow.init(executor=...)``, or this
    object. When Ray is already initialized in this process and ``address`` is ``None``,
    that connection is used as is. Cancelling a run force-cancels its tasks
    (``ray.cancel(ref, force=True)``), which kills the worker process running the body.

    Args:
        address: ``None`` for a local Ray (``ray.init()``) or ``"ray://host:port"`` (Ray
            Client).
        name: The executor's name (what ``StepOptions.executor`` refers to).
        connect_timeout_seconds: How long to try to reach ``address`` before ``ray.init``.
        init_options: More keyword arguments for ``ray.init`` (e.g. ``num_cpus``).

    Raises:
        ClusterConnectionError: ``address`` cannot be reached, or Ray is already
            connected elsewhere in this process.
        ImportError: ``ray`` is not installed.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        name: str = "ray",
        connect_timeout_seconds: float = 5.0,
        init_options: Mapping[str, object] | None = None,
    ) -> None:
        if connect_timeout_seconds <= 0:
            raise ValueError(f"`connect_timeout_seconds` must be > 0, got {connect_timeout_seconds!r}")
        if address is not None and not address.startswith("ray://"):
            raise ValueError(f"`address` must be None or 'ray://host:port', got {address!r}.")
        ray = _import_ray()
        self.name = name
        self.address = address
        if address is not None:
            check_reachable(
                address,
                default_port=_DEFAULT_CLIENT_PORT,
                timeout_seconds=connect_timeout_seconds,
                what="Ray cluster",
            )
        self._owns_ray = not ray.is_initialized()
        if not self._owns_ray:
            if address is not None:
                raise ClusterConnectionError(
                    f"Cannot connect to the Ray cluster at {address!r}: Ray is already initialized in "
                    "this process. Call ray.shutdown() first, or pass executor='ray' to use the "
                    "current connection."
                )
        else:
            try:
                ray.init(address=address, **dict(init_options or {}))
            except ConnectionError as exc:
                raise ClusterConnectionError(
                    f"Cannot connect to the Ray cluster at {address!r}: {exc}. Check that it runs and "
                    "the address is right, or use executor='local'."
                ) from exc
        self._remote = ray.remote(run_payload)
        self._closed = False

    def __repr__(self) -> str:
        return f"<evkit.RayExecutor name={self.name!r} address={self.address or 'local'!r}>"

    async def run(self, call: StepCall) -> object:
        """Run one attempt as a Ray task and await its ``ObjectRef`` on this loop.

        Raises:
            WorkerLostError: The worker or its node died.
            StepTransportError: The function, an argument or the result cannot travel.
        """
        ray = _import_ray()
        token = f"evkit-{call.context.step_id}-{uuid.uuid4().hex}"
        payload = pack(call, engine="ray", token=token)
        options = ray_task_options(call.options.resources)
        ref = self._remote.options(name=f"evkit:{call.context.step_id}", **options).remote(payload)
        step, run = call.context.step_id, call.context.workflow_id
        try:
            reply = await ref
        except asyncio.CancelledError:
            try:
                ray.cancel(ref, force=True)  # kills the worker running the body
            except Exception:  # Ray shut down meanwhile: nothing left to cancel
                logger.warning("Cancelling the Ray task of step %r failed", step, exc_info=True)
            raise
        except (
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError,
            ray.exceptions.RayActorError,
            ray.exceptions.LocalRayletDiedError,
            ray.exceptions.ObjectLostError,
            ray.exceptions.OutOfMemoryError,
        ) as exc:
            raise WorkerLostError(
                f"Step {step!r} of run {run!r}: the Ray worker running it died "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})."
            ) from exc
        return unpack(reply, call, engine="ray")

    async def aclose(self) -> None:
        """Shut Ray down if this executor started it (``ray.init``); otherwise do nothing."""
        if self._closed:
            return
        self._closed = True
        if self._owns_ray:
            await asyncio.to_thread(_import_ray().shutdown)
