"""Scenario 6: cold start, a fresh process from ``import`` to the first workflow result.

The child script below is run with ``python -c``; it times itself from before
``import evkit`` to the printed result of a one-step workflow on a new store file. The
floor imports asyncio and DuckDB, creates a table, commits one row and prints it.
"""

from __future__ import annotations

EVKIT_CHILD = """
import time
start = time.perf_counter()
from evkit import workflow
workflow.init(storage={path!r})

@workflow.step
def add(a, b):
    return a + b

result = add.step(1, 2).run(workflow_id="cold")
elapsed = time.perf_counter() - start
assert result == 3, result
print("RESULT", elapsed, flush=True)
workflow.shutdown()
"""

FLOOR_CHILD = """
import time
start = time.perf_counter()
import asyncio
import duckdb

async def main():
    con = duckdb.connect({path!r})
    con.execute("CREATE TABLE results (step VARCHAR, value INTEGER)")
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT INTO results VALUES ('add', ?)", [1 + 2])
    con.execute("COMMIT")
    return con.execute("SELECT value FROM results").fetchone()[0]

result = asyncio.run(main())
elapsed = time.perf_counter() - start
assert result == 3, result
print("RESULT", elapsed, flush=True)
"""
