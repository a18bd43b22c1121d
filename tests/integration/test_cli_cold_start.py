"""A cold `evkit` command answered by the store's owner imports neither the engine nor DuckDB.

What it imports is most of a cold start's time, so the test pins the modules loaded (not a
time): a fresh process runs the CLI's main against a live owner of this process, then
reports which of the heavy modules it has loaded.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import evkit

pytestmark = [pytest.mark.slow, pytest.mark.allow_blocking]

_HEAVY = ("duckdb", "pyarrow", "aiohttp", "evkit.engine", "evkit.api", "evkit.runtime")

_CHILD = """
import contextlib, io, json, sys
from evkit.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    status = main(["list", "--json", "--storage", sys.argv[1]])
heavy = sorted(name for name in {heavy!r} if name in sys.modules)
print(json.dumps({{"status": status, "listed": json.loads(out.getvalue()), "heavy": heavy}}))
"""


@pytest.fixture
def owner(tmp_path: os.PathLike[str]) -> Iterator[evkit.Runtime]:
    """An owner of a store, serving its control endpoint from its loop thread."""
    runtime = evkit.Runtime(os.path.join(tmp_path, "store.duckdb"), loop="thread")
    runtime.engine()
    asyncio.run(runtime.serving_async())
    try:
        yield runtime
    finally:
        runtime.close()


def _cold_list(storage: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(heavy=_HEAVY), storage],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_cold_list_through_the_owner_imports_neither_the_engine_nor_duckdb(
    owner: evkit.Runtime,
) -> None:
    result = _cold_list(owner.storage)
    assert result["status"] == 0
    assert result["listed"] == {"storage": owner.storage, "runs": []}
    assert result["heavy"] == []


def test_a_cold_list_of_a_store_nobody_owns_still_reads_the_file(tmp_path: os.PathLike[str]) -> None:
    storage = os.path.join(tmp_path, "store.duckdb")
    evkit.Runtime(storage, loop="thread").close()
    result = _cold_list(storage)
    assert result["status"] == 0
    assert result["listed"] == {"storage": storage, "runs": []}
    assert "duckdb" in result["heavy"]  # the file is read here, with DuckDB
