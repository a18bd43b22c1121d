"""The DuckDB store: schema and migrations, the single writer, and loads for resume."""

from __future__ import annotations

from evkit.store.connection import open_store as open_store
from evkit.store.rows import now as now, run_status as run_status
from evkit.store.schema import SCHEMA_VERSION as SCHEMA_VERSION, USER_VIEWS as USER_VIEWS
from evkit.store.writer import StoreWriter as StoreWriter, WriteQueue as WriteQueue

__all__ = ["SCHEMA_VERSION", "USER_VIEWS", "StoreWriter", "WriteQueue", "now", "open_store", "run_status"]
