"""SIGKILL a child during a re-run (``node.run(workflow_id=ID)`` on a stored run), then
resume the store in this process: the re-run continues with its new code, no reused
step executes again and no checkpointed event is polled again."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest

import evkit
from evkit import workflow

pytestmark = [pytest.mark.crash, pytest.mark.slow]

CHILD = pathlib.Path(__file__).with_name("_rerun_child.py")


def child(db: str, scenario: str, counter: str, *, kill_at: str | None = None) -> str:
    """Run the child; with ``kill_at``, SIGKILL it once it prints ``READY <kill_at>``."""
    env = {k: v for k, v in os.environ.items() if k != "EVKIT_CRASH_AT"}
    if kill_at is not None:
        env["EVKIT_CRASH_AT"] = kill_at
    proc = subprocess.Popen(
        [sys.executable, "-u", str(CHILD), db, scenario, counter],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()  # the child prints one line: READY, FAILED or its output
    finally:
        if kill_at is not None:
            proc.kill()
        proc.wait(timeout=60)  # DuckDB allows one writing process: wait until it is gone
    if kill_at is not None:
        assert line == f"READY {kill_at}\n", f"child said {line!r}; stderr: {proc.stderr.read()}"  # type: ignore[union-attr]
        assert proc.returncode == -9
    return line


def counts(counter: str) -> Counter[str]:
    with open(counter) as f:
        return Counter(line.strip() for line in f)


@pytest.fixture
def files(tmp_path: pathlib.Path) -> Iterator[tuple[str, str]]:
    yield str(tmp_path / "rerun.duckdb"), str(tmp_path / "calls.txt")
    workflow.shutdown()


def test_a_rerun_killed_in_its_fixed_step_continues_on_resume(files: tuple[str, str]) -> None:
    db, counter = files
    assert child(db, "first", counter).startswith("FAILED ")
    child(db, "fixed", counter, kill_at="rerunning")
    workflow.init(storage=db, loop="thread")
    assert workflow.get_status("crash") is workflow.RESUMABLE
    assert workflow.resume("crash") == 43
    assert counts(counter) == {"poll": 1, "commit": 1, "prep": 1, "downstream v1": 1, "downstream v2": 2}
    assert evkit.sql("SELECT poll_attempts, commits, generation FROM events").fetchall() == [(1, 1, 1)]
    assert evkit.sql(
        "SELECT step_id, generation, reason, state, superseded FROM step_history "
        "WHERE kind = 'function' ORDER BY step_id, generation"
    ).fetchall() == [
        ("downstream", 1, "first run", "failed", True),
        ("downstream", 2, "code changed", "succeeded", False),
        ("prep", 1, "first run", "succeeded", False),
    ]


def test_a_repoll_killed_while_polling_polls_once_more_on_resume(files: tuple[str, str]) -> None:
    db, counter = files
    assert child(db, "first", counter).startswith("FAILED ")
    child(db, "repoll", counter, kill_at="repolling")
    workflow.init(storage=db, loop="thread")
    assert workflow.resume("crash") == 43
    # The first event was committed once; the repoll's poll was cut short by the kill.
    assert counts(counter) == {"poll": 3, "commit": 2, "prep": 1, "downstream v1": 1, "downstream v2": 1}
    assert evkit.sql(
        "SELECT step_id, generation, reason, state, superseded FROM step_history ORDER BY step_id, generation"
    ).fetchall() == [
        ("approval", 1, "first run", "committed", True),
        ("approval", 2, "repoll", "committed", False),
        ("downstream", 1, "first run", "failed", True),
        ("downstream", 2, "code changed", "succeeded", False),
        ("prep", 1, "first run", "succeeded", False),
    ]
