"""Where step bodies run: the local thread pool by default, or a Dask or Ray cluster.

:func:`resolve_executor` turns what users pass to ``workflow.init(executor=...)`` into a
:class:`~evkit.executors.base.StepExecutor`. The Dask and Ray modules import their
libraries only when used, so evkit works without them.
"""

from __future__ import annotations

from evkit.errors import (
    ClusterConnectionError as ClusterConnectionError,
    RemoteStepError as RemoteStepError,
    StepTransportError as StepTransportError,
    WorkerLostError as WorkerLostError,
)
from evkit.executors.base import StepCall as StepCall, StepExecutor as StepExecutor
from evkit.executors.dask import DASK_SCHEMES, DaskExecutor as DaskExecutor
from evkit.executors.local import LocalExecutor as LocalExecutor
from evkit.executors.ray import RayExecutor as RayExecutor


def resolve_executor(spec: object, *, name: str | None = None) -> StepExecutor:
    """Return the executor ``spec`` names.

    Args:
        spec: ``None`` or ``"local"`` (thread pool); a ``distributed.Client``, a Dask
            cluster object or a scheduler address (``"tcp://host:8786"``); ``"ray"`` (a
            local Ray, or the one already initialized) or ``"ray://host:port"``; or an
            object that already is a ``StepExecutor``.
        name: The name to register a Dask or Ray executor under (default ``"dask"`` /
            ``"ray"``); ``StepOptions.executor`` refers to it.

    Raises:
        ClusterConnectionError: The cluster address cannot be reached (the message names it).
        ImportError: The spec needs ``distributed`` or ``ray``, which is not installed.
        TypeError: ``spec`` is none of the accepted kinds.
    """
    if spec is None or spec == "local":
        return LocalExecutor()
    if isinstance(spec, StepExecutor):
        return spec
    if isinstance(spec, str):
        if spec == "ray" or spec.startswith("ray://"):
            return RayExecutor(None if spec == "ray" else spec, name=name or "ray")
        if spec.startswith(DASK_SCHEMES):
            return DaskExecutor(spec, name=name or "dask")
    elif type(spec).__module__.partition(".")[0] == "distributed":
        return DaskExecutor(spec, name=name or "dask")
    raise TypeError(
        "`executor` must be 'local', a dask distributed.Client (or cluster, or a scheduler "
        "address like 'tcp://host:8786'), 'ray' or 'ray://host:port', or a StepExecutor; "
        f"got {spec!r}."
    )
