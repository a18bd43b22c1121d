"""Where step bodies run: the local thread pool by default, or a Dask or Ray cluster.

:func:`resolve_executor` turns what users pass to ``workflow.init(executor=...)`` into a
:class:`~evkit.executors.base.StepExecutor`.
"""

from __future__ import annotations

from evkit.executors.base import StepCall as StepCall, StepExecutor as StepExecutor
from evkit.executors.local import LocalExecutor as LocalExecutor


def resolve_executor(spec: object) -> StepExecutor:
    """Return the executor ``spec`` names.

    Args:
        spec: ``None`` or ``"local"`` (thread pool), or an object that already is a
            ``StepExecutor``.

    Raises:
        TypeError: ``spec`` is none of the accepted kinds.
    """
    if spec is None or spec == "local":
        return LocalExecutor()
    if isinstance(spec, StepExecutor):
        return spec
    raise TypeError(
        f"`executor` must be 'local' or a StepExecutor, got {spec!r}."
    )
