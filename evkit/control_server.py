"""The control endpoint the store's owner serves to its clients, on the engine's loop.

A process whose runtime opens a store for writing owns it (DuckDB lets one process
write a file). This aiohttp server on 127.0.0.1 lets other processes (the ``evkit``
command, scripts, a second notebook) query, send, cancel and watch through the owner:
the calls of ``evkit.operations``, pickled, on ``/v1/call/{op}``; read-only SQL as Arrow
IPC on ``/v1/sql``; a long poll of a run's changes on ``/v1/changes/{workflow_id}``.
Every request carries the secret of the owner file (``evkit.owner_file``); it never
starts or resumes a run.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import duckdb

from evkit import codec, operations
from evkit.engine import ActiveRun, Engine
from evkit.errors import EvkitError, ReadOnlyQueryError, RunStateError, WorkflowNotFoundError
from evkit.model import RunProgress, RunSnapshot
from evkit.owner_file import OwnerInfo, remove_owner_file, write_owner_file
from evkit.services import Service
from evkit.store.details import load_step_details

if TYPE_CHECKING:
    from aiohttp import web

logger = logging.getLogger("evkit")

PICKLE_TYPE = "application/x-evkit-pickle"
ARROW_STREAM_TYPE = "application/vnd.apache.arrow.stream"
SECRET_HEADER = "Authorization"
MAX_REQUEST_BYTES = 256 * 1024 * 1024  # send_events of many payloads in one request
MAX_CHANGES_WAIT_SECONDS = 60.0
SQL_BATCH_ROWS = 122_880  # DuckDB's own vector multiple: Arrow batches of ~1 row group


class ControlServer(Service):
    """Serves one engine's store to clients in other processes, until the engine closes.

    Args:
        engine: The engine whose calls it serves (it runs on the engine's loop).
        storage: The store's path (the owner file goes beside it).
    """

    def __init__(self, engine: Engine, storage: str) -> None:
        self._engine = engine
        self._storage = storage
        self._secret = secrets.token_urlsafe(32)
        self._runner: web.AppRunner | None = None
        self._starting: asyncio.Task[OwnerInfo] | None = None
        self.info: OwnerInfo | None = None
        self._closed = False
        # The long polls waiting now: closing wakes them, so no client holds the close up.
        self._waiters: set[asyncio.Event] = set()

    def __repr__(self) -> str:  # never shows the secret
        where = self.info.url if self.info is not None else "starting"
        return f"<evkit ControlServer {self._storage!r} {where}>"

    # ------------------------------------------------------------------ life cycle

    def start_soon(self) -> asyncio.Task[OwnerInfo]:
        """Start listening in a task of the engine's loop (call it on that loop); returns the task."""
        if self._starting is None:
            self._starting = self._engine.loop.create_task(self._start(), name="evkit-control-start")
            self._starting.add_done_callback(_log_start_failure)
        return self._starting

    async def _start(self) -> OwnerInfo:
        # Importing aiohttp costs a fresh process 0.1-0.3 s: on a worker thread, the loop
        # (and the first run, which does not wait for the endpoint) goes on meanwhile. It
        # starts with the engine, not later: a pause in the middle of a run would be worse.
        web = await asyncio.to_thread(importlib.import_module, "aiohttp.web")

        app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[self._auth_middleware()])
        app.router.add_post("/v1/call/{op}", self._call)
        app.router.add_post("/v1/sql", self._sql)
        app.router.add_get("/v1/changes/{workflow_id}", self._changes)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        info = OwnerInfo(
            url=f"http://127.0.0.1:{address[1]}",
            secret=self._secret,
            pid=os.getpid(),
            host=socket.gethostname(),
            storage=self._storage,
        )
        if self.is_closed():
            await runner.cleanup()
            raise RunStateError(f"The store {self._storage!r} was closed while its endpoint started.")
        await asyncio.to_thread(write_owner_file, info)
        if self.is_closed():  # closed while the file was written: it must not outlive the runtime
            await asyncio.to_thread(remove_owner_file, info)
            await runner.cleanup()
            raise RunStateError(f"The store {self._storage!r} was closed while its endpoint started.")
        self.info = info
        logger.info("evkit: store %r serves its clients on %s", self._storage, info.url)
        return info

    def is_closed(self) -> bool:
        """True once the engine closed the endpoint."""
        return self._closed

    def close_nowait(self) -> None:
        """Remove the owner file and stop listening; requests in flight end in a task."""
        if self._closed:
            return
        self._closed = True
        self._wake_waiters()
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
        if self.info is not None:
            # A short block, once, at shutdown on the engine's own loop (see Runtime.close).
            remove_owner_file(self.info)
        runner = self._runner
        if runner is not None and not self._engine.loop.is_closed():
            self._engine.loop.create_task(runner.cleanup(), name="evkit-control-stop")

    async def aclose(self) -> None:
        """Remove the owner file and stop listening."""
        if self._closed:
            return
        self._closed = True
        self._wake_waiters()
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            await asyncio.gather(self._starting, return_exceptions=True)
        if self.info is not None:
            await asyncio.to_thread(remove_owner_file, self.info)
        if self._runner is not None:
            await self._runner.cleanup()

    def _wake_waiters(self) -> None:
        for waiter in list(self._waiters):
            waiter.set()

    # ------------------------------------------------------------------ requests

    def _auth_middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        from aiohttp import web

        @web.middleware
        async def check_secret(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            sent = request.headers.get(SECRET_HEADER)
            if sent is None or not sent.startswith("Bearer "):
                logger.warning(
                    "evkit control endpoint of %r: refused %s %s from %s: no secret",
                    self._storage,
                    request.method,
                    request.path,
                    request.remote,
                )
                return _json_error(
                    401,
                    "unauthorized",
                    "Send the secret of the store's owner file as 'Authorization: Bearer <secret>'.",
                )
            if not secrets.compare_digest(sent[len("Bearer ") :].encode(), self._secret.encode()):
                logger.warning(
                    "evkit control endpoint of %r: refused %s %s from %s: wrong secret",
                    self._storage,
                    request.method,
                    request.path,
                    request.remote,
                )
                return _json_error(
                    403,
                    "forbidden",
                    "The secret is wrong: read it again from the store's owner file (a restarted "
                    "owner has a new one).",
                )
            return await handler(request)

        return check_secret

    async def _call(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        op = request.match_info["op"]
        handler = _OPS.get(op)
        if handler is None:
            return _json_error(404, "unknown_operation", f"No operation {op!r}; known: {', '.join(_OPS)}.")
        try:
            kwargs = codec.loads(await request.read())
            if not isinstance(kwargs, dict):
                raise TypeError(f"the body must be a pickled dict, got {type(kwargs).__qualname__}")
        except Exception as exc:
            return _json_error(
                400, "bad_body", f"The body of {op!r} is not a pickled dict of arguments ({exc})."
            )
        try:
            outcome: tuple[str, object] = ("ok", await handler(self._engine, **kwargs))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome = ("error", exc)
        try:
            body = codec.dumps(outcome)
        except TypeError as exc:
            error = outcome[1] if outcome[0] == "error" else None
            text = f"{type(error).__name__}: {error}" if error is not None else f"the result of {op!r}"
            body = codec.dumps(("error", EvkitError(f"{text} (it cannot be sent to this process: {exc})")))
        return web.Response(body=body, content_type=PICKLE_TYPE)

    async def _sql(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        try:
            document = await request.json()
            query = document["query"]
            params = document.get("params")
            if not isinstance(query, str) or not isinstance(params, (list, dict, type(None))):
                raise TypeError("`query` must be a string and `params` a list, an object or null")
        except Exception as exc:
            return _json_error(
                400, "bad_body", f'The body must be JSON {{"query": "...", "params": [...]}} ({exc}).'
            )
        try:
            body = await asyncio.to_thread(self._query_arrow, query, params)
        except ReadOnlyQueryError as exc:
            return _json_error(400, "read_only", str(exc))  # the client raises ReadOnlyQueryError
        except duckdb.Error as exc:
            return _json_error(400, "query_failed", f"The query failed: {exc}")
        return web.Response(body=body, content_type=ARROW_STREAM_TYPE)

    def _query_arrow(self, query: str, params: list[object] | dict[str, object] | None) -> bytes:
        import pyarrow as pa

        statements = duckdb.extract_statements(query)
        kinds = [statement.type.name for statement in statements]
        if kinds != ["SELECT"]:
            found = ", ".join(kinds) or "no statement"
            raise ReadOnlyQueryError(
                f"SQL through the store's owner only reads: one SELECT statement, got {found}. "
                "Nothing was changed. Query the views workflows, steps, events and inbox_events.",
                path=self._storage,
            )
        cursor = self._engine.writer.thread_cursor()
        # Rolled back whatever happens: even a SELECT can change state (nextval()).
        cursor.execute("BEGIN TRANSACTION")
        try:
            reader = cursor.sql(query, params=params).to_arrow_reader(SQL_BATCH_ROWS)
            assert reader is not None  # a SELECT always has a result
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
        finally:
            cursor.execute("ROLLBACK")
        return memoryview(sink.getvalue())  # type: ignore[return-value]  # aiohttp sends it as is

    async def _changes(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        workflow_id = request.match_info["workflow_id"]
        try:
            after = int(request.query.get("after", "-1"))
            wait = min(float(request.query.get("wait", "20")), MAX_CHANGES_WAIT_SECONDS)
        except ValueError as exc:
            return _json_error(400, "bad_query", f"`after` must be an integer and `wait` seconds ({exc}).")
        active = self._engine.active(workflow_id)
        logger.debug("evkit control endpoint: a client follows run %r (after version %d)", workflow_id, after)
        if active is not None and _version(active) <= after and wait > 0:
            changed = asyncio.Event()
            unsubscribe = _subscribe(active, changed.set)
            active.task.add_done_callback(lambda _: changed.set())
            self._waiters.add(changed)
            try:
                async with asyncio.timeout(wait):
                    await changed.wait()
            except TimeoutError:
                pass
            finally:
                self._waiters.discard(changed)
                unsubscribe()
        active = self._engine.active(workflow_id)
        if active is not None:
            progress = active.progress(event_offset=0, event_limit=1)
            return web.json_response(
                {"version": progress.version, "status": progress.status.value, "live": True}
            )
        execution = self._engine.last_execution(workflow_id)
        if execution is not None:
            progress = execution.progress(event_offset=0, event_limit=1)
            return web.json_response(
                {"version": progress.version, "status": progress.status.value, "live": False}
            )
        try:
            status: str | None = (await operations.status(self._engine, workflow_id)).value
        except WorkflowNotFoundError:
            status = None  # the client's next call (get_output...) raises the error itself
        return web.json_response({"version": None, "status": status, "live": False})


def _log_start_failure(task: asyncio.Task[OwnerInfo]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, RunStateError):
        logger.warning(
            "evkit: the store's control endpoint could not start (%s: %s); other processes "
            "cannot use this store while this process holds it.",
            type(error).__name__,
            error,
        )


def _json_error(status: int, error: str, message: str) -> web.StreamResponse:
    from aiohttp import web

    return web.json_response({"error": error, "message": message}, status=status)


def _version(active: ActiveRun) -> int:
    return active.progress(event_offset=0, event_limit=1).version


def _subscribe(active: ActiveRun, callback: Callable[[], None]) -> Callable[[], None]:
    execution = active.execution
    if execution is not None:
        return execution.subscribe(callback)
    active.subscribers.append(callback)
    return lambda: active.subscribers.remove(callback) if callback in active.subscribers else None


# ---------------------------------------------------------------------- operations


def _live(engine: Engine, workflow_id: str) -> ActiveRun:
    active = engine.active(workflow_id)
    if active is None:
        raise RunStateError(
            f"Run {workflow_id!r} is not running in the store's owner (process {os.getpid()}); "
            "a live view follows running runs only. Its status: workflow.get_status(...).",
            workflow_id=workflow_id,
        )
    return active


async def _hello(engine: Engine) -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "storage": engine.writer.path}


async def _list_all(engine: Engine) -> list[tuple[str, str]]:
    return [(workflow_id, status.value) for workflow_id, status in await engine.statuses()]


async def _get_status(engine: Engine, workflow_id: str) -> str:
    return (await operations.status(engine, workflow_id)).value


async def _cancel(engine: Engine, workflow_id: str) -> str:
    return (await engine.cancel(workflow_id)).value


async def _handle(engine: Engine, workflow_id: str) -> str:
    """The status of a run a client wants a handle of (it must be live here)."""
    return _live(engine, workflow_id).status.value


async def _snapshot(engine: Engine, workflow_id: str) -> RunSnapshot:
    active = engine.active(workflow_id)
    execution = engine.last_execution(workflow_id)
    if active is None and execution is not None:
        return execution.snapshot()
    return _live(engine, workflow_id).snapshot()


async def _progress(engine: Engine, workflow_id: str, event_offset: int, event_limit: int) -> RunProgress:
    active = engine.active(workflow_id)
    execution = engine.last_execution(workflow_id)
    if active is None and execution is not None:
        return execution.progress(event_offset=event_offset, event_limit=event_limit)
    return _live(engine, workflow_id).progress(event_offset=event_offset, event_limit=event_limit)


async def _step_details(engine: Engine, workflow_id: str, step_id: str) -> dict[str, object]:
    execution = engine.last_execution(workflow_id)
    found = execution.step_record(step_id) if execution is not None else None
    record = args = kwargs = None
    kind = None
    if found is not None:
        step, record = found
        kind, args, kwargs = step.kind, step.args, step.kwargs
    stored = await engine.queue.read(load_step_details, workflow_id, step_id)
    return {"record": record, "kind": kind, "args": args, "kwargs": kwargs, "stored": stored}


_OPS: Mapping[str, Callable[..., Awaitable[Any]]] = {
    "hello": _hello,
    "list_all": _list_all,
    "get_status": _get_status,
    "get_output": operations.output,
    "get_metadata": operations.metadata,
    "send_event": operations.send,
    "send_events": operations.send_many,
    "cancel": _cancel,
    "runs_overview": operations.runs_overview,
    "run_detail": operations.run_detail,
    "handle": _handle,
    "snapshot": _snapshot,
    "progress": _progress,
    "step_details": _step_details,
}
