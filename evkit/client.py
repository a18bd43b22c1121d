"""A runtime of a process that does not own its store: it forwards calls to the owner.

``workflow.init(storage=PATH)`` on a store another process owns gives a
:class:`ClientRuntime`: queries, sends, cancels and live views go to the owner's control
endpoint (``evkit.control_server``) found through its owner file; runs start and resume
only in the owner. Requests use the standard library's ``http.client`` with one kept-alive
connection per thread: a cold ``evkit list`` imports nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, final
from urllib.parse import quote, urlsplit

from evkit import codec
from evkit.clock import WallClock
from evkit.errors import (
    EvkitError,
    OwnerUnreachableError,
    ReadOnlyQueryError,
    StoreError,
    StoreLockedError,
    StoreOwnedElsewhereError,
)
from evkit.model import EVENT_PAGE_SIZE, RunProgress, RunSnapshot, WorkflowStatus
from evkit.owner_file import OwnerInfo, live_owner, pid_alive

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    # Bound at run time by _load_the_engine_side(), which the paths that use them call first.
    from evkit.handle import StepDetails, _call_text, _notebook_module  # noqa: TC004
    from evkit.runtime import LoopThread  # noqa: TC004

logger = logging.getLogger("evkit")

OWNER_FILE_WAIT_SECONDS = 5.0
"""How long a process that finds the store held waits for the holder's owner file.

An owner writes it a moment after its engine starts (0.1-0.3 s in a fresh process, which
imports aiohttp then; in a notebook, once the cell that opened the store returns)."""
DEFAULT_TIMEOUT_SECONDS = 30.0
"""How long a request waits for the owner ($EVKIT_CLIENT_TIMEOUT_SECONDS overrides it)."""
CHANGES_WAIT_SECONDS = 20.0
"""How long one long poll of a run's changes waits at the owner before it asks again."""

_PICKLE_TYPE = "application/x-evkit-pickle"
_Opened = TypeVar("_Opened")


def _load_the_engine_side() -> None:
    """Import what live views and step details need from the engine's side, once.

    ``evkit.handle`` and ``evkit.runtime`` import the engine and DuckDB, most of a cold
    start; a request to the owner (a cold ``evkit list``) needs neither, so only the
    paths that use them load them, here.
    """
    global StepDetails, _call_text, _notebook_module, LoopThread
    from evkit.handle import StepDetails, _call_text, _notebook_module
    from evkit.runtime import LoopThread


def _timeout_seconds() -> float:
    text = os.environ.get("EVKIT_CLIENT_TIMEOUT_SECONDS", "")
    try:
        value = float(text) if text.strip() else DEFAULT_TIMEOUT_SECONDS
    except ValueError:
        raise ValueError(
            f"$EVKIT_CLIENT_TIMEOUT_SECONDS must be a number of seconds > 0, got {text!r}."
        ) from None
    if not value > 0:
        raise ValueError(f"$EVKIT_CLIENT_TIMEOUT_SECONDS must be a number of seconds > 0, got {text!r}.")
    return value


class ControlClient:
    """Requests to one owner's control endpoint, from any thread.

    Args:
        owner: The owner file's contents.
        timeout_seconds: How long a request waits for the owner's answer.
    """

    def __init__(self, owner: OwnerInfo, *, timeout_seconds: float | None = None) -> None:
        self.owner = owner
        self.timeout_seconds = _timeout_seconds() if timeout_seconds is None else timeout_seconds
        address = urlsplit(owner.url)
        self._host = address.hostname or "127.0.0.1"
        self._port = address.port or 80
        self._local = threading.local()
        # Every thread's connection, so close() can end a long poll another thread waits in.
        self._connections: set[http.client.HTTPConnection] = set()
        self._connections_lock = threading.Lock()

    def _connection(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        reused = connection is not None
        if connection is None:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            self._local.connection = connection
            with self._connections_lock:
                self._connections.add(connection)
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        return connection, reused

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> tuple[int, str, bytes]:
        """Send one request; returns ``(status, content type, body)``.

        Raises:
            OwnerUnreachableError: The owner exited, or did not answer in time.
        """
        headers = {"Authorization": f"Bearer {self.owner.secret}"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        wait = self.timeout_seconds if timeout is None else timeout
        for attempt in range(2):
            connection, reused = self._connection(wait)
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                return response.status, response.getheader("Content-Type", ""), data
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                self._local.connection = None
                with self._connections_lock:
                    self._connections.discard(connection)
                # A kept-alive connection the owner closed while idle: try once on a new one.
                stale = reused and isinstance(
                    exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
                )
                if attempt == 0 and stale and pid_alive(self.owner.pid):
                    continue
                raise self._unreachable(exc, wait) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _unreachable(self, exc: BaseException, wait: float) -> OwnerUnreachableError:
        owner = self.owner
        storage = owner.storage
        if isinstance(exc, TimeoutError) and pid_alive(owner.pid):
            text = (
                f"The owner of store {storage!r} ({owner.describe()}) did not answer within "
                f"{wait:g} s. Its event loop may be busy: in a notebook, a cell running "
                "synchronous code holds the kernel's loop (the owner serves during cells if it "
                'calls workflow.init(loop="thread")). Try again, or set '
                "$EVKIT_CLIENT_TIMEOUT_SECONDS."
            )
        elif pid_alive(owner.pid):
            text = (
                f"The owner of store {storage!r} ({owner.describe()}) refused or dropped the "
                f"request ({type(exc).__name__}: {exc}); it may be closing the store. Try again; "
                f"once it has closed it, call workflow.init(storage={storage!r}) to open the store here."
            )
        else:
            text = (
                f"The owner of store {storage!r} ({owner.describe()}) is gone: it exited during "
                f"or before this request ({type(exc).__name__}: {exc}). What the request asked may "
                "or may not have been done (a sent event is stored whole or not at all: send it "
                "again with the same event_id and it is delivered once). Call "
                f"workflow.init(storage={storage!r}) again: this process then owns the store and "
                "can resume its runs (workflow.resume_all())."
            )
        return OwnerUnreachableError(text, path=storage, pid=owner.pid, host=owner.host)

    def _refused(self, status: int, data: bytes) -> StoreError:
        try:
            message = json.loads(data)["message"]
        except (ValueError, KeyError, TypeError):
            message = data[:200].decode(errors="replace")
        return StoreError(
            f"The owner of store {self.owner.storage!r} ({self.owner.describe()}) refused the "
            f"request ({status}): {message}",
            path=self.owner.storage,
        )

    def call(self, op: str, *, timeout: float | None = None, **kwargs: object) -> Any:
        """Call operation ``op`` of the owner with ``kwargs``; return its result or raise its error.

        Raises:
            OwnerUnreachableError: The owner exited, or did not answer in time.
            EvkitError: What the operation raised at the owner (the same class and fields).
        """
        status, _, data = self.request(
            "POST", f"/v1/call/{op}", codec.dumps(kwargs), content_type=_PICKLE_TYPE, timeout=timeout
        )
        if status != 200:
            raise self._refused(status, data)
        outcome = codec.loads(data)
        assert isinstance(outcome, tuple)
        kind, value = outcome
        if kind == "error":
            assert isinstance(value, BaseException)
            raise value
        return value

    def sql_arrow(self, query: str, params: object = None) -> pa.Table:
        """Run a read-only query at the owner; returns its result as an Arrow table.

        Raises:
            ReadOnlyQueryError: The query is not a single SELECT statement (nothing changed).
            StoreError: The query failed (DuckDB's message).
            OwnerUnreachableError: The owner exited, or did not answer in time.
        """
        import pyarrow as pa

        body = json.dumps({"query": query, "params": params}).encode()
        status, _, data = self.request("POST", "/v1/sql", body, content_type="application/json")
        if status != 200:
            try:
                reply = json.loads(data)
                error, message = reply["error"], reply["message"]
            except (ValueError, KeyError, TypeError):
                raise self._refused(status, data) from None
            kind = ReadOnlyQueryError if error == "read_only" else StoreError
            raise kind(message, path=self.owner.storage)
        return pa.ipc.open_stream(pa.py_buffer(data)).read_all()

    def changes(self, workflow_id: str, *, after: int, wait: float) -> dict[str, Any]:
        """Wait (at most ``wait`` s) until the run's version passes ``after``; returns its state.

        Returns:
            ``{"version": int | None, "status": str, "live": bool}``.

        Raises:
            StoreError: The store has no such run.
            OwnerUnreachableError: The owner exited, or did not answer in time.
        """
        path = f"/v1/changes/{quote(workflow_id, safe='')}?after={after}&wait={wait:g}"
        status, _, data = self.request("GET", path, timeout=wait + self.timeout_seconds)
        if status != 200:
            raise self._refused(status, data)
        result: dict[str, Any] = json.loads(data)
        return result

    def close(self) -> None:
        """Close every thread's connection; a request waiting in one fails at once."""
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            sock = connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
            connection.close()


def open_or_connect(storage: str, open_here: Callable[[], _Opened]) -> _Opened | ClientRuntime:
    """Open ``storage`` in this process with ``open_here``, or connect to the process that owns it.

    A store held by a process that serves nothing may be held for a moment only (an
    ``evkit`` command reading it), and an owner writes its owner file a moment after it
    opens the store: both are tried again until one works or ``OWNER_FILE_WAIT_SECONDS``
    pass.

    Raises:
        StoreLockedError: Another runtime of this process holds the store, or the holder
            kept it and serves no control endpoint (no owner file appeared).
        OwnerUnreachableError: The owner file names a process that does not answer.
    """
    deadline = time.monotonic() + OWNER_FILE_WAIT_SECONDS
    while True:
        try:
            return open_here()
        except StoreLockedError as locked:
            if locked.pid is None:
                raise  # held in this process (DuckDB names the pid of another process)
            owner = live_owner(storage)
            if owner is not None and owner.pid != os.getpid():
                runtime = ClientRuntime(storage, owner)
                runtime.call("hello", timeout=min(runtime.timeout_seconds, 5.0))
                return runtime
            if time.monotonic() >= deadline:
                raise StoreLockedError(
                    f"{locked} It serves no other process (it wrote no owner file "
                    f"{os.path.basename(storage)}.owner.json): it may be an older evkit, a "
                    "program that is not evkit, or a runtime that has not run anything yet (its "
                    "endpoint starts with its engine).",
                    path=storage,
                    pid=locked.pid,
                ) from None
        time.sleep(0.02)  # wait for the holder to close the store or write its owner file


@final
class ClientRuntime:
    """What ``workflow.init()`` returns where another process owns the store.

    ``list_all``, ``get_status``, ``get_output``, ``get_metadata``, ``sql``,
    ``send_event``, ``send_events`` and ``cancel`` go to the owner; :meth:`handle` gives a
    live handle of a run the owner runs. Starting or resuming a run raises
    ``StoreOwnedElsewhereError`` naming the owner. If the owner exits, the next call
    raises ``OwnerUnreachableError``; ``workflow.init()`` again then opens the store here.

    A context manager: exiting closes the connection to the owner (not the owner's store).

    Args:
        storage: The store's path.
        owner: The owner file's contents.
    """

    def __init__(self, storage: str, owner: OwnerInfo) -> None:
        self.storage = os.path.abspath(storage)
        self.store_key = os.path.realpath(self.storage)
        self.owner = owner
        self.clock = WallClock()
        self.loop_mode = "thread"
        self._client = ControlClient(owner)
        self.timeout_seconds = self._client.timeout_seconds
        self._closed = False
        self._lock = threading.Lock()
        self._loop_thread: LoopThread | None = None
        self._duckdb: duckdb.DuckDBPyConnection | None = None
        self._cursors = threading.local()

    def __repr__(self) -> str:
        return f"<evkit.ClientRuntime storage={self.storage!r} owner={self.owner.describe()}>"

    def __enter__(self) -> ClientRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once the runtime was closed."""
        return self._closed

    def close(self) -> None:
        """Stop being a client: close the connection and the live views' loop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop_thread, self._loop_thread = self._loop_thread, None
        self._client.close()
        if loop_thread is not None:
            loop_thread.stop()
        if self._duckdb is not None:
            self._duckdb.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop (in a daemon thread) on which live views of this client follow their runs.

        Raises:
            StoreError: The runtime is closed.
        """
        with self._lock:
            self._check_open()
            if self._loop_thread is None:
                _load_the_engine_side()
                self._loop_thread = LoopThread()
            return self._loop_thread.loop

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(
                f"The evkit client of store {self.storage!r} is closed; call workflow.init() again.",
                path=self.storage,
            )

    def call(self, op: str, *, timeout: float | None = None, **kwargs: object) -> Any:
        """Call the owner's operation ``op`` (see ``evkit.control_server``).

        Raises:
            StoreError: The runtime is closed.
            OwnerUnreachableError: The owner exited, or did not answer in time.
        """
        self._check_open()
        return self._client.call(op, timeout=timeout, **kwargs)

    def changes(self, workflow_id: str, *, after: int, wait: float) -> dict[str, Any]:
        """Long-poll the owner for a change of the run (see :meth:`ControlClient.changes`)."""
        self._check_open()
        return self._client.changes(workflow_id, after=after, wait=wait)

    def sql(self, query: str, params: object = None) -> duckdb.DuckDBPyRelation:
        """Run a read-only query at the owner; returns a DuckDB relation over its Arrow result.

        Raises:
            ReadOnlyQueryError: The query is not one SELECT statement (nothing changed).
            StoreError: The query failed (DuckDB's message).
            OwnerUnreachableError: The owner exited, or did not answer in time.
        """
        self._check_open()
        import duckdb

        table = self._client.sql_arrow(query, params)
        with self._lock:
            if self._duckdb is None:
                self._duckdb = duckdb.connect()
            con = self._duckdb
        # Each thread its own cursor, as the owner's workflow.sql does: a DuckDB
        # connection is not for concurrent use.
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._cursors, "cursor", None)
        if cursor is None:
            cursor = con.cursor()
            self._cursors.cursor = cursor
        return cursor.from_arrow(table)

    def refusal(self, what: str, workflow_id: str | None = None) -> StoreOwnedElsewhereError:
        """The error for ``what`` (e.g. ``"run"``), which only the store's owner can do."""
        run = f" run {workflow_id!r}" if workflow_id else ""
        return StoreOwnedElsewhereError(
            f"Cannot {what}{run} here: store {self.storage!r} is owned by {self.owner.describe()}, "
            "and runs start, resume and are deleted only in the process that owns the store "
            "(DuckDB lets one process write a file). This process is its client: it can list, "
            "query, send events, cancel and watch. Do it in the owner, or stop the owner and "
            f"call workflow.init(storage={self.storage!r}) again to own the store here.",
            path=self.storage,
            pid=self.owner.pid,
            host=self.owner.host,
        )

    def handle(self, workflow_id: str) -> RemoteRunHandle:
        """A live handle of a run the owner is running (display it for the live widget).

        Raises:
            RunStateError: The owner is not running it now.
            WorkflowNotFoundError: The store has no such run.
            OwnerUnreachableError: The owner exited, or did not answer in time.
        """
        self.call("handle", workflow_id=workflow_id)
        return RemoteRunHandle(self, workflow_id)


@final
class RemoteRunHandle:
    """A run the store's owner runs, seen from a client process; shown live in a notebook.

    Like ``RunHandle`` for watching: :attr:`status`, :meth:`result`, :meth:`cancel`,
    :meth:`snapshot`, :meth:`progress`, :meth:`subscribe`. Changes come by long poll: one
    request waits at the owner until the run changes (or ``CHANGES_WAIT_SECONDS`` pass),
    so an update arrives within a round trip, and an idle run costs one request per 20 s.
    """

    def __init__(self, runtime: ClientRuntime, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        self._runtime = runtime
        self._subscribers: list[Callable[[], None]] = []
        self._watching: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        try:
            status = self.status.value
        except EvkitError:
            status = "unknown"
        return f"<evkit.RunHandle {self.workflow_id!r} {status} (in {self._runtime.owner.describe()})>"

    @property
    def runtime(self) -> ClientRuntime:
        """The client runtime this handle calls through."""
        return self._runtime

    @property
    def engine_loop(self) -> asyncio.AbstractEventLoop:
        """The loop subscribers are called on (the client's own, in a daemon thread)."""
        return self._runtime.loop

    @property
    def status(self) -> WorkflowStatus:
        """The run's status at the owner now."""
        return WorkflowStatus(self._runtime.call("get_status", workflow_id=self.workflow_id))

    def done(self) -> bool:
        """True once the run ended."""
        return self.status.is_final

    def result(self, timeout: float | None = None) -> object:
        """Block until the run ends at the owner and return its output.

        Raises:
            StepFailedError: The run failed; WorkflowCancellationError: it was cancelled.
            TimeoutError: ``timeout`` passed; the run goes on.
            OwnerUnreachableError: The owner exited meanwhile.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        version = -1
        while True:
            change = self._runtime.changes(
                self.workflow_id,
                after=version,
                wait=CHANGES_WAIT_SECONDS if deadline is None else max(0.0, deadline - time.monotonic()),
            )
            if not change["live"] or WorkflowStatus(change["status"]).is_final:
                return self._runtime.call("get_output", workflow_id=self.workflow_id)
            version = change["version"]
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Run {self.workflow_id!r} did not finish within {timeout} s; it is still "
                    f"{change['status']}. Wait again, or cancel it with handle.cancel()."
                )

    def cancel(self) -> WorkflowStatus:
        """Cancel the run at the owner; return the status it ends with."""
        return WorkflowStatus(self._runtime.call("cancel", workflow_id=self.workflow_id))

    def snapshot(self) -> RunSnapshot:
        """An immutable picture of the run now, from the owner."""
        snapshot: RunSnapshot = self._runtime.call("snapshot", workflow_id=self.workflow_id)
        return snapshot

    def progress(self, *, event_offset: int = 0, event_limit: int = EVENT_PAGE_SIZE) -> RunProgress:
        """The live view's picture of the run (see ``RunHandle.progress``), from the owner."""
        progress: RunProgress = self._runtime.call(
            "progress", workflow_id=self.workflow_id, event_offset=event_offset, event_limit=event_limit
        )
        return progress

    async def step_details_async(self, step_id: str) -> StepDetails:
        """What is known of one step (see ``RunHandle.step_details_async``), from the owner."""
        found: Mapping[str, Any] = await asyncio.to_thread(
            self._runtime.call, "step_details", workflow_id=self.workflow_id, step_id=step_id
        )
        _load_the_engine_side()
        call_text = _call_text(found["args"], found["kwargs"]) if found["kind"] == "function" else None
        return StepDetails(step=found["record"], call_text=call_text, stored=found["stored"])

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` on :attr:`engine_loop` after the run changes; returns an unsubscribe."""
        loop = self._runtime.loop
        self._subscribers.append(callback)

        def watch() -> None:
            if self._watching is None or self._watching.done():
                self._watching = loop.create_task(self._watch(), name=f"evkit-watch:{self.workflow_id}")

        loop.call_soon_threadsafe(watch)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    async def _watch(self) -> None:
        version = -1
        while self._subscribers:
            try:
                change = await asyncio.to_thread(
                    self._runtime.changes, self.workflow_id, after=version, wait=CHANGES_WAIT_SECONDS
                )
            except EvkitError as exc:
                if self._runtime.closed:
                    return  # closed by its user: nothing to follow any more
                logger.warning("evkit: stopped following run %r: %s", self.workflow_id, exc)
                change = None
            if change is None or change["version"] != version:
                version = -1 if change is None else change["version"]
                for callback in list(self._subscribers):
                    callback()
            if change is None or not change["live"]:
                return

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, object]:
        """The live widget in a notebook (through ``evkit.notebook``, if installed)."""
        _load_the_engine_side()
        notebook = _notebook_module("display")
        if notebook is None:
            return {"text/plain": repr(self)}
        return notebook.mimebundle(self, include=include, exclude=exclude)  # type: ignore[no-any-return]


def new_event_id() -> str:
    """An event id made by the client, so that a send retried after a failure is delivered once."""
    return f"client:{uuid.uuid4().hex}"


def statuses(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, WorkflowStatus]]:
    """``(workflow_id, status)`` pairs from the owner's text statuses."""
    return [(workflow_id, WorkflowStatus(status)) for workflow_id, status in pairs]
