"""A store written by evkit with schema version 3 opens as version 4 and its runs re-run.

``data/store_v3.duckdb.gz`` was written by ``data/make_store_v3.py`` run with the code of
schema version 3: run ``w1`` failed in ``double`` after ``load`` succeeded and event
``approval`` (key ``k``, payload 5) was checkpointed and committed. ``data/rerun_store_v3.py``
re-runs it with ``double`` fixed.
"""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import evkit
from evkit import workflow
from evkit.store import SCHEMA_VERSION

DATA = pathlib.Path(__file__).parent / "data" / "store_v3.duckdb.gz"


@pytest.fixture
def v3_store(store_path: str) -> str:
    """The version-3 store unpacked to this test's own file (a migration writes to it)."""
    with gzip.open(DATA) as packed, open(store_path, "wb") as out:
        shutil.copyfileobj(packed, out)
    return store_path


@pytest.mark.slow
def test_a_version_3_store_is_migrated_and_its_failed_run_re_runs_only_the_fixed_step(v3_store: str) -> None:
    workflow.init(storage=v3_store, loop="thread")
    try:
        assert evkit.sql("SELECT value FROM evkit_meta WHERE key = 'schema_version'").fetchall() == [
            (str(SCHEMA_VERSION),)
        ]
        assert evkit.sql(
            "SELECT step_id, state, generation, reused FROM steps WHERE workflow_id = 'w1' ORDER BY step_id"
        ).fetchall() == [("double", "failed", 1, False), ("load", "succeeded", 1, False)]
        assert evkit.sql("SELECT revision FROM workflows").fetchall() == [(1,)]
    finally:
        workflow.shutdown()
    # The re-run in a process of its own, whose __main__ defines the steps as a notebook
    # would: `load` as it was, `double` fixed.
    child = subprocess.run(
        [sys.executable, str(DATA.with_name("rerun_store_v3.py")), v3_store],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == {
        "output": 47,
        "reused": ["load", "approval"],
        "rerun": {"double": "code changed"},
    }
    workflow.init(storage=v3_store, loop="thread")
    try:
        assert evkit.sql(
            "SELECT step_id, poll_attempts, commits, generation, reused FROM events WHERE workflow_id = 'w1'"
        ).fetchall() == [("approval", 1, 1, 1, True)]
        assert evkit.sql(
            "SELECT step_id, generation, reason, state, superseded FROM step_history "
            "WHERE workflow_id = 'w1' ORDER BY step_id, generation"
        ).fetchall() == [
            ("approval", 1, "first run", "committed", False),
            ("double", 1, "first run", "failed", True),
            ("double", 2, "code changed", "succeeded", False),
            ("load", 1, "first run", "succeeded", False),
        ]
        assert evkit.sql("SELECT status, revision FROM workflows").fetchall() == [("SUCCESSFUL", 2)]
    finally:
        workflow.shutdown()
