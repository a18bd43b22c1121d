"""Where the engine runs, and how calls from any thread reach it.

By default the engine binds to the loop already running in the calling thread (the
kernel's, in a notebook); with no running loop, or with ``loop="thread"``, it runs on its
own loop in a daemon thread. Blocking calls made on the engine's own loop thread (a
notebook cell calling ``run()``) re-enter the loop with nest-asyncio2 (>= 1.7.3; the
original nest_asyncio loses kernel messages with ipykernel 7 -- see docs/design.md).
A store file has at most one open ``Runtime`` per process (see ``_claim_store``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal, TypeVar

import nest_asyncio2

from evkit.clock import Clock, WallClock
from evkit.control_server import ControlServer
from evkit.engine import Engine
from evkit.errors import RunStateError, StoreError, StoreLockedError
from evkit.executors.base import StepExecutor
from evkit.executors.local import LocalExecutor
from evkit.store import StoreWriter
from evkit.store.writer import apply_batch

T = TypeVar("T")
LoopMode = Literal["auto", "running", "thread"]
_LOOP_MODES = ("auto", "running", "thread")


class LoopThread:
    """An event loop running forever in a daemon thread (the ``loop="thread"`` mode)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="evkit-engine", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        # Like asyncio.run(): cancel what is left and let it finish, so no pending task is
        # left for the garbage collector to complain about at a random moment.
        leftover = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        for task in leftover:
            task.cancel()
        if leftover:
            self.loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def stop(self) -> None:
        """Stop the loop, finish its leftover tasks, close it and wait for its thread."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()


# DuckDB gives every connection a process makes to one file the same database, so a second
# runtime on an open store would not fail to open: it would write beside the first, and a
# run both resume would have its events checkpointed twice. One open runtime per file.
_open_stores: dict[str, Runtime] = {}
_open_stores_lock = threading.Lock()


def _claim_store(key: str, runtime: Runtime) -> None:
    """Make ``runtime`` the one open runtime of the file ``key`` in this process.

    Waits while the previous holder is still closing (it may still be writing).

    Raises:
        StoreLockedError: Another runtime of this process has the file open.
    """
    while True:
        with _open_stores_lock:
            holder = _open_stores.get(key)
            if holder is None:
                _open_stores[key] = runtime
                return
            if not holder.closed:
                raise StoreLockedError(
                    f"Store {runtime.storage!r} is already open in this process ({holder!r}); a "
                    "store has one runtime per process. Use that runtime (workflow.get_runtime() "
                    "returns the one workflow.init() made), or close it first.",
                    path=runtime.storage,
                )
            released = holder._released
        released.wait()


def _release_store(key: str, runtime: Runtime) -> None:
    with _open_stores_lock:
        if _open_stores.get(key) is runtime:
            del _open_stores[key]
    runtime._released.set()


class Runtime:
    """The store, its engine and the loop the engine runs on; made by ``workflow.init()``.

    A context manager: exiting closes the store; runs still executing are left RUNNING
    in the store (RESUMABLE later) -- it does not cancel them. A process has at most one
    open runtime per store file: close it before opening another on the same file.

    Args:
        storage: Path of the DuckDB file.
        loop: ``"auto"`` (the running loop if there is one, else a thread),
            ``"running"`` (require a running loop) or ``"thread"``.
        clock: The clock timers use (``FakeClock`` in tests).
        executor: The default executor for step bodies (default: a local thread pool).

    Raises:
        StoreLockedError: Another process, or another open runtime of this process, has
            the file open.
        NotAStoreError, StoreVersionError, StoreError: The file cannot be used.
    """

    def __init__(
        self,
        storage: str,
        *,
        loop: LoopMode = "auto",
        clock: Clock | None = None,
        executor: StepExecutor | None = None,
        executors: Mapping[str, StepExecutor] | None = None,
    ) -> None:
        if loop not in _LOOP_MODES:
            raise ValueError(f"`loop` must be one of {', '.join(map(repr, _LOOP_MODES))}, got {loop!r}")
        self.storage = os.path.abspath(storage)
        # Resolved, so that two spellings of one file (a symlink, "a/../b") are one store.
        self.store_key = os.path.realpath(self.storage)
        self.loop_mode: LoopMode = loop
        self.clock = clock or WallClock()
        self._closed = False
        self._released = threading.Event()
        _claim_store(self.store_key, self)
        try:
            self.writer = StoreWriter(self.storage)
        except BaseException:
            self._closed = True
            _release_store(self.store_key, self)
            raise
        default = executor or LocalExecutor()
        self._executors: dict[str, StepExecutor] = (
            {"local": LocalExecutor()} if default.name != "local" else {}
        )
        self._executors.update(executors or {})
        self._executors[default.name] = default
        self._default_executor = default.name
        self._loop_thread: LoopThread | None = None
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<evkit.Runtime storage={self.storage!r} loop={self.loop_mode!r}>"

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ the engine

    @property
    def closed(self) -> bool:
        """True once the runtime was closed."""
        return self._closed

    def engine(self) -> Engine:
        """The engine, created on first use on the loop the mode says.

        Raises:
            StoreError: The runtime is closed.
            RunStateError: ``loop="running"`` but no loop runs in this thread.
        """
        with self._lock:
            if self._closed:
                raise StoreError(
                    f"The evkit runtime for {self.storage!r} is closed; call workflow.init() again.",
                    path=self.storage,
                )
            engine = self._engine
            if engine is not None and not engine.loop.is_closed():
                return engine
            self._engine = engine = self._make_engine()
        self._serve(engine)
        return engine

    def _serve(self, engine: Engine) -> None:
        # The owner serves other processes (the CLI, scripts, a second notebook) on the
        # engine's loop. It starts in the background: the first call does not wait for it
        # (in a notebook cell it starts once the cell returns). A client that finds the
        # store held waits a moment for the owner file; `serving_async()` waits for it here.
        server = ControlServer(engine, self.storage)
        engine.services.add(server)
        if running_loop() is engine.loop:
            server.start_soon()
        elif engine.loop.is_running():
            engine.loop.call_soon_threadsafe(server.start_soon)
        # else: a finished asyncio.run's loop: nothing could serve on it

    async def serving_async(self) -> str:
        """Wait until this runtime serves its store to other processes; returns the endpoint's URL.

        The endpoint starts with the engine (in a notebook, once the cell that made it
        returns); its owner file is written by then.

        Raises:
            StoreError: The runtime is closed.
            OSError: The endpoint could not start (the error says why).
        """

        async def wait(engine: Engine) -> str:
            server = engine.services.get(ControlServer)
            if server is None:
                server = ControlServer(engine, self.storage)
                engine.services.add(server)
            info = await asyncio.shield(server.start_soon())
            return info.url

        return await self.acall(wait)

    @property
    def owner_url(self) -> str | None:
        """Where this runtime serves the store to other processes (``None`` until it does)."""
        engine = self._engine
        server = engine.services.get(ControlServer) if engine is not None else None
        return server.info.url if server is not None and server.info is not None else None

    def _make_engine(self) -> Engine:
        running = running_loop()
        if self.loop_mode == "running" and running is None:
            raise RunStateError(
                'workflow.init(loop="running") needs a running event loop in this thread; '
                'call it from async code (or a notebook cell), or use loop="thread".'
            )
        if self.loop_mode != "thread" and running is not None:
            return self._new_engine()
        if self._loop_thread is None:
            self._loop_thread = LoopThread()

        async def create() -> Engine:
            return self._new_engine()

        return asyncio.run_coroutine_threadsafe(create(), self._loop_thread.loop).result()

    def _new_engine(self) -> Engine:
        return Engine(
            writer=self.writer,
            clock=self.clock,
            executors=self._executors,
            default_executor=self._default_executor,
        )

    @property
    def on_engine_loop(self) -> bool:
        """True when called from the engine's loop thread while it runs."""
        engine = self._engine
        return engine is not None and running_loop() is engine.loop

    # ------------------------------------------------------------------ bridges

    def call(self, fn: Callable[[Engine], Awaitable[T]]) -> T:
        """Run ``fn(engine)`` on the engine's loop and block until it returns.

        On the engine's own loop thread (a notebook cell, in the default mode) the loop is
        re-entered with nest-asyncio2 so its other tasks keep running.

        Raises:
            RunStateError: Called from inside a step running on the engine's thread loop.
        """
        engine = self.engine()
        running = running_loop()
        if running is engine.loop:
            return _run_nested(engine.loop, fn(engine))
        if engine.loop.is_running() or self._loop_thread is not None:
            future = asyncio.run_coroutine_threadsafe(_call(fn, engine), engine.loop)
            try:
                return future.result()
            except KeyboardInterrupt:
                future.cancel()
                raise
        # The engine's loop exists but is not running (a finished asyncio.run): run it here.
        return engine.loop.run_until_complete(fn(engine))

    async def acall(self, fn: Callable[[Engine], Awaitable[T]]) -> T:
        """Await ``fn(engine)`` from any loop: directly on the engine's, else through it."""
        engine = self.engine()
        if running_loop() is engine.loop:
            return await fn(engine)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_call(fn, engine), engine.loop))

    def call_soon(self, fn: Callable[[Engine], T]) -> T:
        """Run the synchronous ``fn(engine)`` on the engine's loop thread and return its result.

        Used to start runs: on the engine's loop it runs at once; from another thread it
        waits only for the loop to pick it up.
        """
        engine = self.engine()
        if running_loop() is engine.loop:
            return fn(engine)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(engine))
            except BaseException as exc:
                future.set_exception(exc)

        engine.loop.call_soon_threadsafe(run)
        return future.result()

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Stop executing runs (they stay RESUMABLE), write what is queued, close the store."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            engine, self._engine = self._engine, None
        executors_closed = False
        try:
            if engine is not None and not engine.loop.is_closed():
                if running_loop() is engine.loop:
                    self._close_on_own_loop(engine)
                elif engine.loop.is_running():
                    asyncio.run_coroutine_threadsafe(engine.aclose(), engine.loop).result()
                    executors_closed = True
                else:
                    engine.loop.run_until_complete(engine.aclose())
                    executors_closed = True
            if not executors_closed:
                self._close_executors_elsewhere()
        finally:
            try:
                if self._loop_thread is not None:
                    self._loop_thread.stop()
                self.writer.close()
            finally:
                _release_store(self.store_key, self)

    def _close_executors_elsewhere(self) -> None:
        # No engine loop could close them (none was started, or we are on it and cannot
        # await): close them on a short-lived loop in a helper thread, so a cluster client
        # evkit opened does not live on until the process exits.
        async def close_all() -> None:
            for executor in self._executors.values():
                await executor.aclose()

        closer = threading.Thread(target=asyncio.run, args=(close_all(),), name="evkit-close")
        closer.start()
        closer.join()

    def _close_on_own_loop(self, engine: Engine) -> None:
        # We cannot await on the loop we run on: abandon the runs, then write what is
        # queued synchronously (a short block, once, at shutdown).
        for workflow_id in list(engine._active):
            active = engine.active(workflow_id)
            if active is not None:
                if active.execution is not None:
                    active.execution.abandoned = True
                active.task.cancel()
        engine.services.close_nowait()  # e.g. the HTTP server stops listening at once
        ops = engine.queue.take_pending()
        if ops:
            self.writer.call(apply_batch, ops)

    async def aclose(self) -> None:
        """Like :meth:`close`, awaitable from a running loop."""
        engine = self._engine
        if engine is not None and not engine.loop.is_closed() and not self._closed:
            self._closed = True
            self._engine = None
            try:
                await self._acall_engine(engine, engine.aclose)
                # Joining threads blocks: do it off the running loop.
                if self._loop_thread is not None:
                    await asyncio.to_thread(self._loop_thread.stop)
                await asyncio.to_thread(self.writer.close)
            finally:
                _release_store(self.store_key, self)
        else:
            self.close()

    async def _acall_engine(self, engine: Engine, fn: Callable[[], Awaitable[None]]) -> None:
        if running_loop() is engine.loop:
            await fn()
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(_call0(fn), engine.loop))


async def _call(fn: Callable[[Engine], Awaitable[T]], engine: Engine) -> T:
    return await fn(engine)


async def _call0(fn: Callable[[], Awaitable[None]]) -> None:
    await fn()


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread, or ``None``."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _run_nested(loop: asyncio.AbstractEventLoop, awaitable: Awaitable[T]) -> T:
    nest_asyncio2.apply(loop)
    # If the loop was patched just now, the iteration running us is asyncio's own
    # _run_once: it will pop as many handles as were ready when it began, but the nested
    # run may consume them ("pop from an empty deque"). Top the queue up with no-ops.
    ready = loop._ready  # type: ignore[attr-defined]
    owed = len(ready)
    try:
        return loop.run_until_complete(awaitable)
    finally:
        for _ in range(owed - len(ready)):
            loop.call_soon(_noop)


def _noop() -> None:
    """A handle that does nothing (see ``_run_nested``)."""
