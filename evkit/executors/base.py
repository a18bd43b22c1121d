"""The executor interface: where the body of a non-event step runs.

The engine hands an executor a :class:`StepCall` and awaits the result on its loop; an
executor never blocks the loop. Event waits never go to an executor.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from evkit.context import StepContext
from evkit.model import StepOptions


@dataclass(frozen=True, slots=True, kw_only=True)
class StepCall:
    """One attempt of one step body: call ``func(*args, **kwargs)`` inside ``context``."""

    func: Callable[..., object]
    args: tuple[object, ...]
    kwargs: Mapping[str, object]
    options: StepOptions
    context: StepContext


@runtime_checkable
class StepExecutor(Protocol):
    """Runs step bodies. Implementations: the local thread pool, Dask, Ray."""

    name: str

    def run(self, call: StepCall) -> Awaitable[object]:
        """Run ``call``; awaiting what this returns gives its result or raises what it raised.

        An ``async def run`` fits; so does a plain ``def`` returning a future (the local
        executor does: no coroutine per step in flight).

        Raises:
            WorkerLostError: The worker died; the engine may retry.
            StepTransportError: Something could not be serialized to or from the worker.
        """
        ...

    async def aclose(self) -> None:
        """Release the executor's resources (not the cluster it connected to)."""
        ...
