"""Opening a store file: the lock check, the format check and the migrations.

This is the one place where ``duckdb`` exceptions become ``StoreError`` subclasses
(:func:`store_errors`). It refuses a file that is not an evkit store and leaves it as it
was.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

import duckdb

from evkit.errors import NotAStoreError, StoreError, StoreLockedError, StoreVersionError
from evkit.store.schema import MIGRATIONS, SCHEMA_VERSION, STORE_FORMAT

_LOCK_PID = re.compile(r"PID (\d+)")


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
        holder = f"process {match.group(1)}" if match else "another process"
        return StoreLockedError(
            f"Store {path!r} is open in {holder} (DuckDB lets one process write a file at a "
            "time). Query it from that process with evkit.sql(...), stop that process (or "
            "restart its kernel), or use another file with workflow.init(storage=...).",
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
    with store_errors(path, "opening the store"):
        con = duckdb.connect(path)
    try:
        with store_errors(path, "checking the store format"):
            _check_and_migrate(con, path)
    except BaseException:
        con.close()
        raise
    return con


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
        con.execute("ROLLBACK")
        raise
