"""A store's views come back when it opens writable; a read-only open says which are gone."""

from __future__ import annotations

import os

import duckdb
import pytest

from evkit.errors import StoreError, StoreNotFoundError
from evkit.store import USER_VIEWS, open_store
from evkit.store.connection import open_store_read_only
from evkit.store.schema import CURRENT_VIEWS


def _views(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("SELECT table_name FROM information_schema.tables WHERE table_type = 'VIEW'")
    return {row[0] for row in rows.fetchall()}


@pytest.fixture
def store_without_views(store_path: str) -> str:
    """A store whose user views and internal view were dropped by a plain DuckDB connection
    (as `DROP VIEW workflows` typed into any SQL client would)."""
    open_store(store_path).close()
    con = duckdb.connect(store_path)
    for name in ("workflows", "event_log", "inbox_events"):
        con.execute(f"DROP VIEW {name}")
    con.close()
    return store_path


def test_a_writable_open_recreates_dropped_views(store_without_views: str) -> None:
    con = open_store(store_without_views)
    try:
        assert _views(con) == set(CURRENT_VIEWS)
        for name in USER_VIEWS:
            con.execute(f"SELECT * FROM {name}").fetchall()
        con.execute("SELECT * FROM event_log").fetchall()
    finally:
        con.close()


def test_a_read_only_open_names_the_missing_views_and_how_to_repair_them(store_without_views: str) -> None:
    with pytest.raises(
        StoreError,
        match=(
            rf"^Store '{store_without_views}' has no views 'event_log', 'workflows', 'inbox_events' "
            r"\(dropped by hand\?\)\. A read-only open cannot recreate them; opening the store "
            r"writable once does"
        ),
    ):
        open_store_read_only(store_without_views)
    open_store(store_without_views).close()
    open_store_read_only(store_without_views).close()


def test_a_read_only_open_of_a_missing_path_creates_nothing(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(os.fspath(tmp_path), "typo.duckdb")
    with pytest.raises(StoreNotFoundError, match=rf"^Store '{path}' does not exist\.$"):
        open_store_read_only(path)
    assert os.listdir(tmp_path) == []


def test_a_read_only_open_cannot_write(store_path: str) -> None:
    open_store(store_path).close()
    con = open_store_read_only(store_path)
    try:
        with pytest.raises(duckdb.InvalidInputException, match="read-only mode"):
            con.execute("DROP VIEW workflows")
    finally:
        con.close()
