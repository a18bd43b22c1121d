"""The default executor: step bodies run in a thread pool beside the loop.

``async def`` steps run on the loop itself and never reach an executor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
from typing import final

from evkit.context import set_context
from evkit.executors.base import StepCall


@final
class LocalExecutor:
    """Runs step bodies in a ``ThreadPoolExecutor`` owned by the runtime.

    Args:
        max_workers: Threads in the pool (default: ``min(32, cpus + 4)``).
    """

    name = "local"

    def __init__(self, *, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"`max_workers` must be >= 1, got {max_workers!r}")
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers or min(32, (os.cpu_count() or 1) + 4), thread_name_prefix="evkit-step"
        )

    async def run(self, call: StepCall) -> object:
        """Run the body in a pool thread, inside a copy of the step's context."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        context.run(set_context, call.context)
        return await loop.run_in_executor(
            self._pool, lambda: context.run(call.func, *call.args, **call.kwargs)
        )

    async def aclose(self) -> None:
        """Stop the pool without waiting for bodies still running (their results are dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
