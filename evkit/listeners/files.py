"""Files as an event source: ``FileListener`` delivers a file that appears (or is completed).

The engine's :class:`FileWatchers` service keeps one watcher per (run, pattern, options):
watchfiles' inotify backend on a thread of its own reports changes, the loop waits for
each file to settle, and hands it to one wait. Each version of a file (path, size,
mtime) goes to a run once: the checkpoint's source id names the run and the version,
and a wait skips what the store has. It never reads a file's contents.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fnmatch
import logging
import os
import stat as stat_module
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, final

from evkit.context import get_event_context
from evkit.listeners.base import EventListener
from evkit.services import Service, ServiceRegistry
from evkit.store.service import StoreReads

logger = logging.getLogger("evkit.files")

_DEBOUNCE_MS = 1_600  # longest time watchfiles groups changes over before reporting them
_STEP_MS = 50  # a group ends after this long without a new change
_MAGIC = frozenset("*?[")
# Linux stamps files from a coarse clock that lags time.time() by up to one tick: a file
# written just after a wait started may carry a time just before it. Files within one tick
# of the start count as new (delivering a file that came a tick early beats losing one).
_CLOCK_REALTIME_COARSE = 5  # Linux's id; Python names it only from 3.13
_TIMESTAMP_SLACK_NS = (
    int(time.clock_getres(_CLOCK_REALTIME_COARSE) * 1e9) if sys.platform.startswith("linux") else 0
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FileRecord:
    """A file a :class:`FileListener` delivered: one version of it (its path, size and mtime).

    Attributes:
        path: The file's absolute path.
        size: Its size in bytes when it settled.
        mtime_ns: Its modification time then, in nanoseconds since the epoch.
    """

    path: str
    size: int
    mtime_ns: int

    @property
    def mtime(self) -> dt.datetime:
        """The modification time as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.mtime_ns / 1e9, tz=dt.UTC)

    @property
    def name(self) -> str:
        """The file's name (the last part of its path)."""
        return os.path.basename(self.path)

    @property
    def version(self) -> str:
        """``<path>:<size>:<mtime_ns>``: the same file written again is a new version."""
        return f"{self.path}:{self.size}:{self.mtime_ns}"


class FileListener(EventListener):
    """Waits for a file matching a glob pattern to appear, or to be completed, and returns it.

    ``workflow.wait_for_event(workflow.FileListener, "data/incoming/*.csv")``: the
    step's value is a :class:`FileRecord`. Patterns use glob syntax (``*``, ``?``,
    ``[...]``, ``**`` for any depth; names that start with a dot match only a pattern
    part that does too), relative ones are read against the working directory. The
    directory before the first wildcard must exist.

    A file is delivered once it has *settled*: its size and mtime stayed the same for
    ``settle_seconds`` (a writer that pauses longer than that is seen as done). Writers
    that write under another name (one the pattern does not match, e.g. ``.x.csv.part``)
    and rename the file into place need no settling: pass ``settle_seconds=0``.

    Each version of a file (path, size, mtime) goes to one wait of a run, across
    restarts: several waits of a run on one pattern get different files. Files that
    were there before the wait first started are delivered only with ``existing=True``;
    a file written again later is a new version, delivered again.
    """

    async def poll_for_event(  # type: ignore[override]
        self, pattern: str, *, existing: bool = False, settle_seconds: float = 1.0
    ) -> FileRecord:
        """Return the next settled file that matches ``pattern`` and this run has not had.

        Raises:
            TypeError: An argument has the wrong type.
            ValueError: ``settle_seconds`` is negative.
            FileNotFoundError: The directory to watch does not exist.
            ImportError: watchfiles is not installed (``pip install 'evkit[files]'``).
        """
        if not isinstance(pattern, str) or not pattern:  # type: ignore[redundant-expr]
            raise TypeError(f"FileListener: `pattern` must be a non-empty str (a glob), got {pattern!r}.")
        if not isinstance(existing, bool):
            raise TypeError(f"FileListener: `existing` must be a bool, got {existing!r}.")
        if isinstance(settle_seconds, bool) or not isinstance(settle_seconds, int | float):
            raise TypeError(f"FileListener: `settle_seconds` must be a number, got {settle_seconds!r}.")
        if not settle_seconds >= 0:
            raise ValueError(f"FileListener: `settle_seconds` must not be negative, got {settle_seconds!r}.")
        context = get_event_context()
        watchers = file_watchers(context.services)
        # Made absolute off the loop: it reads the working directory.
        parsed = await asyncio.to_thread(parse_pattern, pattern)
        watcher = watchers.watcher(context.workflow_id, parsed, existing, float(settle_seconds))
        since = None
        if not existing:
            since = await watchers.store.first_waiting_at(context.workflow_id, context.step_id)
        return await watcher.take(since)

    def source_id(self, event: object) -> str | None:
        """``file:<run id>:<path>:<size>:<mtime_ns>``, stored with the checkpoint.

        The run id is part of it: each run gets each file once, whatever other runs took.
        """
        if not isinstance(event, FileRecord):  # the `default` of a timed-out wait
            return None
        return file_source_id(get_event_context().workflow_id, event)

    async def poll_cancelled(  # type: ignore[override]
        self, pattern: str, *, existing: bool = False, settle_seconds: float = 1.0
    ) -> None:
        """Stop the run's watcher of this pattern if no other wait of the run uses it."""
        context = get_event_context()
        watchers = context.services.get(FileWatchers)
        if watchers is not None:
            parsed = await asyncio.to_thread(parse_pattern, pattern)
            watchers.stop_idle(context.workflow_id, parsed, existing, float(settle_seconds))


def file_source_id(workflow_id: str, record: FileRecord) -> str:
    """The source id of ``record``'s checkpoint in run ``workflow_id``."""
    return f"file:{workflow_id}:{record.version}"


@final
class FileWatchers(Service):
    """The engine's file watchers: one per (run, pattern, options), and what each run took.

    Lives in the engine's services; a run's watchers stop when the run ends
    (:meth:`release_run`) and all of them when the engine closes.

    Args:
        store: The store's reads (which files a run has checkpointed, when a wait started).
    """

    def __init__(self, store: StoreReads) -> None:
        self.store = store
        self._watchers: dict[tuple[str, FilePattern, bool, float], _Watcher] = {}
        # Versions handed to a wait of the run in this process: no second wait gets them,
        # even before their checkpoint is stored.
        self._claimed: dict[str, set[str]] = {}

    def watcher(
        self, workflow_id: str, pattern: FilePattern, existing: bool, settle_seconds: float
    ) -> _Watcher:
        """The run's watcher of ``pattern`` with these options (made on first use).

        Raises:
            ImportError: watchfiles is not installed.
        """
        key = (workflow_id, pattern, existing, settle_seconds)
        watcher = self._watchers.get(key)
        if watcher is None:
            _rust_notify()  # fail here, not on the watcher's thread
            watcher = self._watchers[key] = _Watcher(self, workflow_id, pattern, existing, settle_seconds)
        return watcher

    def watchers_of(self, workflow_id: str) -> list[_Watcher]:
        """The run's watchers (for tests and the curious)."""
        return [watcher for key, watcher in self._watchers.items() if key[0] == workflow_id]

    def claims(self, workflow_id: str) -> set[str]:
        """The versions handed to waits of run ``workflow_id`` here (a live set)."""
        return self._claimed.setdefault(workflow_id, set())

    def stop_idle(
        self, workflow_id: str, pattern: FilePattern, existing: bool, settle_seconds: float
    ) -> None:
        """Stop the run's watcher of ``pattern`` if no wait is waiting on it."""
        key = (workflow_id, pattern, existing, settle_seconds)
        watcher = self._watchers.get(key)
        if watcher is not None and not watcher.waiting:
            del self._watchers[key]
            watcher.stop()

    def release_run(self, workflow_id: str) -> None:
        """The run ended: stop its watchers and forget what it took (the store keeps that)."""
        for key in [key for key in self._watchers if key[0] == workflow_id]:
            self._watchers.pop(key).stop()
        self._claimed.pop(workflow_id, None)

    def close_nowait(self) -> None:
        """Stop every watcher now (their threads end within a few milliseconds)."""
        self._stop_all()

    async def aclose(self) -> None:
        """Stop every watcher and wait for their settling tasks to end."""
        settlers = [task for task in self._stop_all() if task is not None]
        await asyncio.gather(*settlers, return_exceptions=True)

    def _stop_all(self) -> list[asyncio.Task[None] | None]:
        watchers, self._watchers = list(self._watchers.values()), {}
        self._claimed.clear()
        return [watcher.stop() for watcher in watchers]


def file_watchers(services: ServiceRegistry) -> FileWatchers:
    """The engine's :class:`FileWatchers` service, made on first use."""
    return services.get_or_add(FileWatchers, lambda: FileWatchers(services.require(StoreReads)))


# ---------------------------------------------------------------------------- patterns


@dataclass(frozen=True, slots=True)
class FilePattern:
    """A glob pattern split where its wildcards start.

    Attributes:
        root: The absolute directory before the first wildcard (the one watched).
        parts: The pattern's parts below ``root``, e.g. ``("*.csv",)``.
    """

    root: str
    parts: tuple[str, ...]

    @property
    def recursive(self) -> bool:
        """True when matching files may be below ``root``'s own entries."""
        return len(self.parts) > 1 or "**" in self.parts

    def matches(self, path: str) -> bool:
        """True when ``path`` (absolute) matches the pattern."""
        relative = os.path.relpath(path, self.root)
        if relative.startswith(os.pardir):
            return False
        return _match_parts(tuple(relative.split(os.sep)), self.parts)


def parse_pattern(pattern: str) -> FilePattern:
    """Split ``pattern`` (made absolute against the working directory) at its first wildcard.

    A pattern without wildcards names one file: its directory is watched for it.
    """
    absolute = os.path.abspath(os.path.expanduser(pattern))
    parts = absolute.split(os.sep)
    first_magic = next((i for i, part in enumerate(parts) if _MAGIC & set(part)), len(parts) - 1)
    root = os.sep.join(parts[:first_magic]) or os.sep
    return FilePattern(root, tuple(parts[first_magic:]))


def _match_parts(names: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    if not parts:
        return not names
    head, rest = parts[0], parts[1:]
    if head == "**":
        return any(_match_parts(names[i:], rest) for i in range(len(names) + 1))
    if not names:
        return False
    name = names[0]
    # As in glob: a name that starts with a dot (a writer's temporary file) needs a dot.
    if name.startswith(".") and not head.startswith("."):
        return False
    return fnmatch.fnmatchcase(name, head) and _match_parts(names[1:], rest)


class _Signature(NamedTuple):
    size: int
    mtime_ns: int


def _stat(path: str) -> os.stat_result | None:
    """The file's stat, or ``None`` if it is gone or not a regular file."""
    try:
        result = os.stat(path)
    except OSError:
        return None
    return result if stat_module.S_ISREG(result.st_mode) else None


def _stat_all(paths: list[str]) -> list[os.stat_result | None]:
    return [_stat(path) for path in paths]


def _scan(pattern: FilePattern) -> list[tuple[str, os.stat_result]]:
    """Every regular file that matches ``pattern`` now, with its stat (blocking: a thread's)."""
    found: list[tuple[str, os.stat_result]] = []
    unlimited = "**" in pattern.parts
    for directory, subdirectories, files in os.walk(pattern.root):
        depth = 0 if directory == pattern.root else os.path.relpath(directory, pattern.root).count(os.sep) + 1
        if not unlimited and depth >= len(pattern.parts) - 1:
            subdirectories.clear()
        for name in files:
            path = os.path.join(directory, name)
            if pattern.matches(path):
                result = _stat(path)
                if result is not None:
                    found.append((path, result))
    return found


def _rust_notify() -> type:
    # The first FileListener wait of a process imports watchfiles here, on the loop (once,
    # like aiohttp for the first HTTP wait): evkit itself never imports it.
    try:
        # watchfiles' documented Rust backend: unlike awatch, it lets the watcher thread say
        # when watching has begun (see _Watcher._watch), so no file slips between the
        # directory scan and the first change reported.
        from watchfiles._rust_notify import RustNotify
    except ImportError as exc:  # pragma: no cover - watchfiles is in the test environment
        raise ImportError("FileListener needs watchfiles: pip install 'evkit[files]'.") from exc
    return RustNotify


# ---------------------------------------------------------------------------- watching


@dataclass(slots=True)
class _Settling:
    signature: _Signature
    since: float  # loop time of the last change seen


class _Watcher:
    """Watches one pattern for one run: finds files, waits for them to settle, hands them out.

    Changes come from a thread blocked in watchfiles (inotify); everything else happens on
    the loop. Versions it hands out are claimed in the service until the run ends.
    """

    def __init__(
        self,
        service: FileWatchers,
        workflow_id: str,
        pattern: FilePattern,
        existing: bool,
        settle_seconds: float,
    ) -> None:
        self._service = service
        self.workflow_id = workflow_id
        self.pattern = pattern
        self._existing = existing
        self._settle_seconds = settle_seconds
        self._waiters: deque[asyncio.Future[FileRecord]] = deque()
        self._settling: dict[str, _Settling] = {}
        self._ready: dict[str, FileRecord] = {}  # settled and not checkpointed, by path, oldest first
        self._changed = asyncio.Event()
        self._stop = threading.Event()
        self._started: asyncio.Future[None] | None = None
        self._settler: asyncio.Task[None] | None = None
        self.thread: threading.Thread | None = None

    def __repr__(self) -> str:
        pattern = os.path.join(self.pattern.root, *self.pattern.parts)
        return f"<FileListener watcher of run {self.workflow_id!r}: {pattern!r} existing={self._existing}>"

    @property
    def waiting(self) -> int:
        """How many waits are waiting for a file from this watcher."""
        return sum(1 for future in self._waiters if not future.done())

    def settling_size(self, path: str) -> int | None:
        """The size ``path`` had when last seen changing, while it settles (else ``None``)."""
        settling = self._settling.get(path)
        return settling.signature.size if settling is not None else None

    async def take(self, since: float | None) -> FileRecord:
        """Wait for the next settled file for a wait of this run.

        ``since`` is when the wait first started (``None``: deliver files that were there
        before, too): a file found by the scan counts only if it changed after it.

        Raises:
            FileNotFoundError: The directory to watch does not exist.
        """
        future: asyncio.Future[FileRecord] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await self._start()
            # After the watch began: a file written from now on is seen by both or by the
            # watch, never by neither.
            found = await asyncio.to_thread(_scan, self.pattern)
            since_ns = None if since is None else int(since * 1e9) - _TIMESTAMP_SLACK_NS
            for path, result in found:
                if since_ns is None or max(result.st_mtime_ns, result.st_ctime_ns) >= since_ns:
                    self._observe(path, result)
            self._hand_out()
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                record = future.result()  # handed over just as the wait was cancelled
                self._service.claims(self.workflow_id).discard(record.version)
                self._ready = {record.path: record, **self._ready}
                self._hand_out()
            raise
        finally:
            self._waiters = deque(f for f in self._waiters if f is not future)

    def stop(self) -> asyncio.Task[None] | None:
        """Stop watching now: the thread ends within a few milliseconds.

        Returns the settling task, cancelled, if one ran.
        """
        self._stop.set()
        if self._settler is not None:
            self._settler.cancel()
        return self._settler

    # ------------------------------------------------------------------ the thread

    async def _start(self) -> None:
        if self._started is None:
            loop = asyncio.get_running_loop()
            self._started = loop.create_future()
            self.thread = threading.Thread(
                target=self._watch,
                args=(loop, self._started),
                name=f"evkit-files:{self.pattern.root}",
                daemon=True,
            )
            self.thread.start()
            self._settler = loop.create_task(self._settle(), name=f"evkit-files-settle:{self.pattern.root}")
        await asyncio.shield(self._started)

    def _watch(self, loop: asyncio.AbstractEventLoop, started: asyncio.Future[None]) -> None:
        """The watcher thread: report changes to the loop until stopped."""
        try:
            if not os.path.isdir(self.pattern.root):
                raise FileNotFoundError(
                    f"FileListener: directory {self.pattern.root!r} does not exist (it is where the pattern "
                    f"{os.path.join(self.pattern.root, *self.pattern.parts)!r} starts). Create it before the "
                    "wait starts, or fix the pattern."
                )
            notify = _rust_notify()(
                [self.pattern.root],
                False,  # debug
                "WATCHFILES_FORCE_POLLING" in os.environ,  # as watchfiles itself reads it (network drives)
                300,  # poll delay (ms), with polling only
                self.pattern.recursive,
                True,  # ignore_permission_denied: an unreadable subdirectory is not an error
            )
        except Exception as exc:
            _call_soon(loop, _settle_future, started, exc)
            return
        _call_soon(loop, _settle_future, started, None)
        with notify:
            while not self._stop.is_set():
                try:
                    changes = notify.watch(_DEBOUNCE_MS, _STEP_MS, 0, self._stop)
                except Exception as exc:  # the backend failed: the waits hear of it
                    _call_soon(loop, self._fail, exc)
                    return
                if not isinstance(changes, set):
                    continue  # "stop" ends the loop; "signal" and "timeout" do not apply here
                paths = sorted({path for _, path in changes if self.pattern.matches(path)})
                if paths and not _call_soon(loop, self._on_changes, [(path, _stat(path)) for path in paths]):
                    return

    def _fail(self, exc: Exception) -> None:
        logger.error("%r stopped: %s", self, exc)
        for future in self._waiters:
            if not future.done():
                error = RuntimeError(
                    f"Watching {self.pattern.root!r} for run {self.workflow_id!r} failed: {exc}"
                )
                error.__cause__ = exc
                future.set_exception(error)

    # ------------------------------------------------------------------ settling

    def _on_changes(self, observed: list[tuple[str, os.stat_result | None]]) -> None:
        for path, result in observed:
            self._observe(path, result)

    def _observe(self, path: str, result: os.stat_result | None) -> None:
        """A file was seen (by the scan or a change): (re)start its settling if it changed."""
        if result is None:  # gone before it was delivered
            self._settling.pop(path, None)
            self._ready.pop(path, None)
            return
        signature = _Signature(result.st_size, result.st_mtime_ns)
        ready = self._ready.get(path)
        if ready is not None:
            if (ready.size, ready.mtime_ns) == signature:
                return
            del self._ready[path]  # written again before any wait took it: wait for the new version
        settling = self._settling.get(path)
        if settling is not None and settling.signature == signature:
            return
        self._settling[path] = _Settling(signature, asyncio.get_running_loop().time())
        self._changed.set()

    async def _settle(self) -> None:
        """Move files whose size and mtime stayed the same for ``settle_seconds`` to the ready ones."""
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            if not self._settling:
                await self._changed.wait()
                continue
            due_at = min(entry.since for entry in self._settling.values()) + self._settle_seconds
            if due_at > loop.time():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(due_at):
                        await self._changed.wait()  # a new change may be due sooner
                continue
            due = [
                path
                for path, entry in self._settling.items()
                if entry.since + self._settle_seconds <= loop.time()
            ]
            results = await asyncio.to_thread(_stat_all, due)
            settled: list[FileRecord] = []
            for path, result in zip(due, results, strict=True):
                entry = self._settling.get(path)
                if entry is None:
                    continue
                if result is None:
                    del self._settling[path]
                    continue
                signature = _Signature(result.st_size, result.st_mtime_ns)
                if signature != entry.signature:
                    self._settling[path] = _Settling(signature, loop.time())
                elif entry.since + self._settle_seconds <= loop.time():
                    del self._settling[path]
                    settled.append(FileRecord(path=path, size=signature.size, mtime_ns=signature.mtime_ns))
            if settled:
                await self._admit(settled)

    async def _admit(self, settled: list[FileRecord]) -> None:
        """Make settled files ready, leaving out those this run already has."""
        claims = self._service.claims(self.workflow_id)
        fresh = [record for record in settled if record.version not in claims]
        if not fresh:
            return
        ids = [file_source_id(self.workflow_id, record) for record in fresh]
        taken = await self._service.store.checkpointed_sources(ids)
        for record, source_id in sorted(zip(fresh, ids, strict=True), key=lambda pair: pair[0].mtime_ns):
            if source_id in taken or record.version in claims or self._settling.get(record.path) is not None:
                continue  # checkpointed before a restart; or taken, or written again, meanwhile
            self._ready[record.path] = record
        self._hand_out()

    def _hand_out(self) -> None:
        claims = self._service.claims(self.workflow_id)
        while self._ready and self._waiters:
            future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            path = next(iter(self._ready))
            record = self._ready.pop(path)
            if record.version in claims:
                continue
            self._waiters.popleft()
            claims.add(record.version)
            future.set_result(record)


def _settle_future(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: object) -> bool:
    """Run ``callback(*args)`` on ``loop`` from the watcher thread; False once the loop is closed."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        return False
    return True
