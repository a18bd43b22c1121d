"""Opening a store file: the lock check, the format check and the migrations.

This is the one place where ``duckdb`` exceptions become ``StoreError`` subclasses
(:func:`store_errors`). It refuses a file that is not an evkit store and leaves it as it
was; a file it created itself and could not finish is removed. It also tells whether the
file at the store's path is still the one the connection writes (:func:`check_still_at_path`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator

import duckdb

from evkit.errors import (
    NotAStoreError,
    StoreError,
    StoreLockedError,
    StoreNotFoundError,
    StoreVersionError,
)
from evkit.store.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    STORE_FORMAT,
    USER_VIEWS,
    missing_views,
    recreate_views,
)

_LOCK_PID = re.compile(r"PID (\d+)")
# DuckDB's IO errors carry the OS's text, not its errno: "Could not write file "x.wal":
# No space left on device".
_OS_CAUSES = {
    os.strerror(errno.ENOSPC): "the disk holding it is full",
    os.strerror(errno.EDQUOT): "the disk quota of this user is used up",
    os.strerror(errno.EACCES): "this process may not write it",
    os.strerror(errno.EROFS): "it is on a read-only file system",
}

FileIdentity = tuple[int, int]
"""A file's ``(st_dev, st_ino)``: which file a path named when the store was opened."""


@contextlib.contextmanager
def store_errors(path: str, doing: str) -> Iterator[None]:
    """Turn a ``duckdb.Error`` raised inside the block into a ``StoreError`` naming ``path``."""
    try:
        yield
    except duckdb.Error as exc:
        raise translate(exc, path, doing) from exc


def translate(exc: duckdb.Error, path: str, doing: str) -> StoreError:
    """The ``StoreError`` that explains ``exc`` (raised while ``doing`` on ``path``)."""
    text = str(exc)
    if "Could not set lock" in text or "Conflicting lock" in text:
        match = _LOCK_PID.search(text)
        pid = int(match.group(1)) if match else None
        holder = f"process {pid}" if pid is not None else "another process"
        return StoreLockedError(
            f"Store {path!r} is open in {holder} (DuckDB lets one process write a file at a "
            "time). Query it from that process with evkit.sql(...), stop that process (or "
            "restart its kernel), or use another file with workflow.init(storage=...). If "
            "the holder is an `evkit` command that reads the store (list, status, sql, "
            "watch), it holds the file only for a moment: try again.",
            path=path,
            pid=pid,
        )
    for os_text, cause in _OS_CAUSES.items():
        if os_text in text:
            return StoreError(
                f"Store {path!r}: {doing} failed: {cause} ({text.splitlines()[0]}). Nothing "
                "it was writing was committed (so no event of it was committed at its source "
                "either). Fix that, then restart the process (or the kernel), call "
                "workflow.init() and workflow.resume_all(); or pass another path to "
                "workflow.init(storage=...).",
                path=path,
            )
    if "not a valid DuckDB database" in text or "Corrupt" in text or "corrupt" in text:
        return NotAStoreError(
            f"{path!r} is not a DuckDB file evkit can open ({text.splitlines()[0]}). It was "
            "left untouched; point workflow.init(storage=...) at another path.",
            path=path,
        )
    return StoreError(f"Store {path!r}: {doing} failed: {text}", path=path)


def open_store(path: str) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) and migrate the store at ``path``; return its connection.

    Raises:
        StoreLockedError: Another process has the file open.
        NotAStoreError: The file is not DuckDB, or is a DuckDB file of something else.
        StoreVersionError: The store was written by a newer evkit.
        StoreError: The directory does not exist, or ``path`` is a directory.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise StoreError(
            f"Store {path!r}: the directory {directory!r} does not exist. Create it, or pass "
            "another path to workflow.init(storage=...).",
            path=path,
        )
    if os.path.isdir(path):
        raise StoreError(
            f"Store {path!r} is a directory, not a file. Pass the path of a file, e.g. "
            f"workflow.init(storage={os.path.join(path, 'evkit.duckdb')!r}).",
            path=path,
        )
    _forget_empty_file(path)
    try:
        with store_errors(path, "opening the store"):
            con = duckdb.connect(path)
        try:
            with store_errors(path, "checking the store format"):
                _check_and_migrate(con, path)
            with store_errors(path, "recreating the store's views"):
                if missing_views(con):
                    recreate_views(con)
        except BaseException:
            con.close()
            raise
    except BaseException:
        # A store that could not be created (a full disk) must not leave a 0-byte file
        # behind: DuckDB refuses to open one, so the next init would fail for no reason.
        # Only an empty file goes: one with content may be another process's new store.
        _forget_empty_file(path)
        raise
    return con


def open_store_read_only(path: str) -> duckdb.DuckDBPyConnection:
    """Open the existing store at ``path`` read-only; return its connection.

    Nothing is created or changed: no file, no migration, no view. DuckDB lets a
    read-only connection open a file only while no process has it open for writing.

    Raises:
        StoreNotFoundError: No file is at ``path``.
        StoreLockedError: Another process has the file open for writing.
        NotAStoreError: The file is not DuckDB, or is a DuckDB file of something else.
        StoreVersionError: The store was written by another evkit version (a newer one,
            or an older one that must be migrated by a writable open first).
        StoreError: A view is missing (a writable open recreates it), or ``path`` is a
            directory.
    """
    if os.path.isdir(path):
        raise StoreError(f"Store {path!r} is a directory, not a store file.", path=path)
    if not os.path.exists(path):
        raise StoreNotFoundError(f"Store {path!r} does not exist.", path=path)
    with store_errors(path, "opening the store read-only"):
        con = duckdb.connect(path, read_only=True)
    try:
        with store_errors(path, "checking the store format"):
            _check_read_only(con, path)
    except BaseException:
        con.close()
        raise
    return con


def _check_read_only(con: duckdb.DuckDBPyConnection, path: str) -> None:
    tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if "evkit_meta" not in tables:
        raise NotAStoreError(
            f"{path!r} is a DuckDB file but not an evkit store"
            + (f" (it has tables {', '.join(sorted(tables)[:5])})." if tables else " (it is empty)."),
            path=path,
        )
    meta = dict(con.execute("SELECT key, value FROM evkit_meta").fetchall())
    if meta.get("format") != STORE_FORMAT:
        raise NotAStoreError(
            f"{path!r} has an evkit_meta table but format {meta.get('format')!r}, not {STORE_FORMAT!r}.",
            path=path,
        )
    version = int(meta.get("schema_version", "0"))
    if version != SCHEMA_VERSION:
        newer = version > SCHEMA_VERSION
        raise StoreVersionError(
            f"Store {path!r} has schema version {version}; this evkit reads version "
            f"{SCHEMA_VERSION}. "
            + (
                "Upgrade evkit (pip install -U evkit) to read it."
                if newer
                else "Open it writable once with this evkit (any run, resume or send) to migrate it."
            ),
            path=path,
        )
    missing = missing_views(con)
    if missing:
        kind = "view" if len(missing) == 1 else "views"
        documented = [name for name in missing if name in USER_VIEWS]
        raise StoreError(
            f"Store {path!r} has no {kind} {', '.join(map(repr, missing))} (dropped by hand?). "
            "A read-only open cannot recreate "
            + ("it" if len(missing) == 1 else "them")
            + "; opening the store writable once does (any run, resume, send or cancel)."
            + (" The documented views are " + ", ".join(USER_VIEWS) + "." if documented else ""),
            path=path,
        )


def _forget_empty_file(path: str) -> None:
    """Remove a 0-byte file at ``path``: it holds nothing, and DuckDB refuses to open it.

    Creating a store on a full disk leaves one (older evkit versions kept it).
    """
    with contextlib.suppress(OSError):
        if os.stat(path).st_size == 0 and not os.path.exists(path + ".wal"):
            os.remove(path)


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction, if there is still one, after an error.

    A COMMIT that fails (a full disk, say) has already ended the transaction, and DuckDB
    then refuses the ROLLBACK ("no transaction is active"): that refusal must not hide
    the error that matters, which the caller re-raises.
    """
    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK")


def file_identity(path: str) -> FileIdentity:
    """Which file ``path`` names now (call it right after opening the store)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def check_still_at_path(path: str, identity: FileIdentity) -> None:
    """Raise unless ``path`` still names the file the store's connection writes.

    A deleted (or replaced) file stays writable through the open connection, so without
    this check evkit would commit events at their sources while their checkpoints go to
    a file no one can ever open again. One ``stat``: about a microsecond.

    Raises:
        StoreError: The file (or its directory) was deleted, moved or replaced.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        found = f"it is gone ({exc.strerror}): the file or a directory above it was deleted or moved"
    else:
        if (st.st_dev, st.st_ino) == identity:
            return
        found = "another file is there now: the store file was replaced"
    raise StoreError(
        f"Store {path!r} is no longer the file evkit opened: {found}. The last batch of "
        "writes went to the lost file, so no event of it was committed at its source, and "
        "evkit writes nothing more to that file. Restart the process (or the kernel) and "
        "call workflow.init(storage=...) with a path in an existing directory: the sources "
        "deliver their uncommitted events again.",
        path=path,
    )


def _check_and_migrate(con: duckdb.DuckDBPyConnection, path: str) -> None:
    tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if "evkit_meta" not in tables:
        if tables:
            raise NotAStoreError(
                f"{path!r} is a DuckDB file but not an evkit store (it has tables "
                f"{', '.join(sorted(tables)[:5])}). It was left untouched; point "
                "workflow.init(storage=...) at another path.",
                path=path,
            )
        version = 0
    else:
        meta = dict(con.execute("SELECT key, value FROM evkit_meta").fetchall())
        if meta.get("format") != STORE_FORMAT:
            raise NotAStoreError(
                f"{path!r} has an evkit_meta table but format {meta.get('format')!r}, not "
                f"{STORE_FORMAT!r}. It was left untouched.",
                path=path,
            )
        version = int(meta.get("schema_version", "0"))
    if version > SCHEMA_VERSION:
        raise StoreVersionError(
            f"Store {path!r} has schema version {version}, but this evkit knows versions up "
            f"to {SCHEMA_VERSION}. Upgrade evkit (pip install -U evkit) to open it.",
            path=path,
        )
    if version == SCHEMA_VERSION:
        return
    con.execute("BEGIN TRANSACTION")
    try:
        if version == 0:
            con.execute("CREATE TABLE evkit_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
            con.execute(
                "INSERT INTO evkit_meta VALUES ('format', ?), ('schema_version', '0')", [STORE_FORMAT]
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[target](con)
        con.execute("UPDATE evkit_meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
