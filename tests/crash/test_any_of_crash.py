"""SIGKILL a child process in the middle of a workflow.wait_for_any, then resume its store
here: killed before the winner's checkpoint, every branch is polled again; after it, no
branch is, and only the winner is committed."""

from __future__ import annotations

import os
import pathlib
import select
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest

import evkit
from evkit import workflow

pytestmark = [pytest.mark.crash, pytest.mark.slow]

CHILD = pathlib.Path(__file__).with_name("_any_of_child.py")


def run_child_until(db: str, counter: str, crash_at: str) -> None:
    """Start the child, wait for its READY line, SIGKILL it, wait for it to exit."""
    proc = subprocess.Popen(
        [sys.executable, "-u", str(CHILD), db, counter],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, EVKIT_CRASH_AT=crash_at),
    )
    try:
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if readable else ""
        assert line.startswith(f"READY {crash_at}"), (
            f"child said {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"  # type: ignore[union-attr]
        )
    finally:
        proc.kill()
        proc.wait(timeout=30)  # DuckDB allows one writing process: wait until it is gone
    assert proc.returncode == -9


def counts(counter: str) -> Counter[str]:
    with open(counter) as f:
        return Counter(line.strip() for line in f)


@pytest.fixture
def files(tmp_path: pathlib.Path) -> Iterator[tuple[str, str]]:
    yield str(tmp_path / "crash.duckdb"), str(tmp_path / "calls.txt")
    workflow.shutdown()


def event_states(db: str) -> list[tuple[object, ...]]:
    workflow.init(storage=db, loop="thread")
    return evkit.sql("SELECT step_id, state, poll_attempts, commits FROM events").fetchall()


def test_every_branch_is_polled_again_after_a_kill_before_the_winner_is_checkpointed(
    files: tuple[str, str],
) -> None:
    db, counter = files
    run_child_until(db, counter, "polling")
    assert counts(counter) == {"poll first": 1, "poll second": 1}
    assert event_states(db) == [("any_of", "waiting", 1, 0)]
    assert workflow.resume("any") == "first 42"
    assert counts(counter) == {
        "poll first": 2,
        "poll second": 2,
        "cleanup second": 1,
        "commit first": 1,
        "downstream": 1,
    }


def test_no_branch_is_polled_again_after_a_kill_after_the_winner_is_checkpointed(
    files: tuple[str, str],
) -> None:
    db, counter = files
    run_child_until(db, counter, "checkpointed")
    assert event_states(db) == [("any_of", "checkpointed", 1, 0)]
    assert evkit.sql("""SELECT payload LIKE '["first", [%, "first", 21]]' FROM events""").fetchall() == [
        (True,)
    ]
    assert workflow.resume("any") == "first 42"
    # The loser was cleaned up before the checkpoint; on resume only the winner's commit runs.
    assert counts(counter) == {
        "poll first": 1,
        "poll second": 1,
        "cleanup second": 1,
        "commit first": 1,
        "downstream": 1,
    }
