"""The default executor: step bodies run in worker threads beside the loop.

``async def`` steps run on the loop itself and never reach an executor.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import os
import queue
import threading
from typing import final

from evkit.context import set_context
from evkit.executors.base import StepCall

_Job = tuple[asyncio.AbstractEventLoop, asyncio.Future[object], contextvars.Context, StepCall]


@final
class LocalExecutor:
    """Runs step bodies in worker threads owned by the runtime.

    A lean pool rather than ``loop.run_in_executor``: a job is one queue entry and an
    asyncio future, and the results of bodies that finish together reach the loop in one
    wake-up. With ``ThreadPoolExecutor`` each body cost a ``concurrent.futures.Future``
    (two locks), a chained asyncio future and a self-pipe write per result, which
    dominated big runs in profiles (see docs/performance.md).

    Args:
        max_workers: Threads at most (default: ``min(32, cpus + 4)``); started as needed.
    """

    name = "local"

    def __init__(self, *, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"`max_workers` must be >= 1, got {max_workers!r}")
        self._max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        # Finished jobs waiting to be handed to their loop, and the loops with a hand-over
        # already scheduled (so a burst of results costs one call_soon_threadsafe).
        self._done: dict[
            asyncio.AbstractEventLoop, collections.deque[tuple[asyncio.Future[object], bool, object]]
        ] = {}
        self._scheduled: set[asyncio.AbstractEventLoop] = set()
        self._closed = False

    def run(self, call: StepCall) -> asyncio.Future[object]:
        """Run the body in a worker thread, inside a copy of the step's context.

        Returns:
            A future of the body's result (a plain future, not a coroutine: one object
            less per step in flight).

        Raises:
            RuntimeError: The executor was closed.
        """
        if self._closed:
            raise RuntimeError("The local executor was closed; call workflow.init() to start a new runtime.")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self._jobs.put((loop, future, contextvars.copy_context(), call))
        with self._lock:
            # As ThreadPoolExecutor does: a job takes an idle worker's place, or else a
            # new worker is started (up to the limit); a worker counts itself idle only
            # when it finds the queue empty.
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self._max_workers:
                thread = threading.Thread(
                    target=self._work, name=f"evkit-step_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                with self._lock:
                    self._idle += 1
                job = self._jobs.get()
            if job is None:
                return
            loop, future, context, call = job
            if future.cancelled():  # its step was cancelled before the body started
                ok, value = False, None
            else:
                try:
                    value = context.run(_invoke, call)
                    ok = True
                except BaseException as exc:
                    ok, value = False, exc
            self._hand_over(loop, future, ok, value)
            del job, future, context, call, value  # don't keep a result alive while idle

    def _hand_over(
        self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[object], ok: bool, value: object
    ) -> None:
        with self._lock:
            self._done.setdefault(loop, collections.deque()).append((future, ok, value))
            if loop in self._scheduled:
                return
            self._scheduled.add(loop)
        try:
            loop.call_soon_threadsafe(self._deliver, loop)
        except RuntimeError:  # the loop is closed: nobody waits for these results
            with self._lock:
                self._scheduled.discard(loop)
                self._done.pop(loop, None)

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._scheduled.discard(loop)
            done = self._done.pop(loop, ())
        for future, ok, value in done:
            if future.done():
                continue
            if ok:
                future.set_result(value)
            elif isinstance(value, StopIteration):  # a future refuses it (PEP 479)
                future.set_exception(RuntimeError(f"step body raised {value!r}"))
            elif isinstance(value, BaseException):
                future.set_exception(value)
            else:
                future.cancel()

    async def aclose(self) -> None:
        """Stop the workers without waiting for bodies still running.

        Their results are dropped; bodies not started yet are cancelled.
        """
        self._closed = True
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                with contextlib.suppress(RuntimeError):  # its loop is closed already
                    job[0].call_soon_threadsafe(job[1].cancel)
        with self._lock:
            threads = len(self._threads)
        for _ in range(threads):
            self._jobs.put(None)


def _invoke(call: StepCall) -> object:
    set_context(call.context)
    return call.func(*call.args, **call.kwargs)
