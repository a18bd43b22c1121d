"""SIGKILL a child process at each point of the event contract, then resume its store in
this process (which never imported the child's listener or steps: they come back from
the store) and count how often poll, commit and the downstream step ran."""

from __future__ import annotations

import os
import pathlib
import select
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest

import evkit
from evkit import workflow

pytestmark = [pytest.mark.crash, pytest.mark.slow]

CHILD = pathlib.Path(__file__).with_name("_child.py")


def run_child_until(db: str, scenario: str, counter: str, crash_at: str) -> str:
    """Start the child, wait for its READY line, SIGKILL it, wait for it to exit."""
    env = dict(os.environ, EVKIT_CRASH_AT=crash_at)
    proc = subprocess.Popen(
        [sys.executable, "-u", str(CHILD), db, scenario, counter],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = read_line(proc, timeout_seconds=60)
        assert line.startswith(f"READY {crash_at}"), (
            f"child said {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        )
    finally:
        proc.kill()
        proc.wait(timeout=30)  # DuckDB allows one writing process: wait until it is gone
    assert proc.returncode == -9
    return line


def read_line(proc: subprocess.Popen[str], *, timeout_seconds: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_seconds)
    if not ready:
        raise TimeoutError(f"the child printed nothing within {timeout_seconds} s")
    return proc.stdout.readline()


def counts(counter: str) -> Counter[str]:
    with open(counter) as f:
        return Counter(line.strip() for line in f)


@pytest.fixture
def files(tmp_path: pathlib.Path) -> Iterator[tuple[str, str]]:
    yield str(tmp_path / "crash.duckdb"), str(tmp_path / "calls.txt")
    workflow.shutdown()


def event_states(db: str) -> list[tuple[object, ...]]:
    workflow.init(storage=db, loop="thread")
    return evkit.sql("SELECT state, poll_attempts, commits FROM events").fetchall()


def test_event_step_polls_again_after_kill_while_polling(files: tuple[str, str]) -> None:
    db, counter = files
    run_child_until(db, "event", counter, "polling")
    assert event_states(db) == [("waiting", 1, 0)]
    assert workflow.get_status("crash") is workflow.RESUMABLE
    assert workflow.resume("crash") == 42
    assert counts(counter) == {"poll": 2, "commit": 1, "downstream": 1}


def test_event_step_resumes_after_kill_after_checkpoint_before_commit(files: tuple[str, str]) -> None:
    db, counter = files
    run_child_until(db, "event", counter, "checkpointed")
    assert event_states(db) == [("checkpointed", 1, 0)]
    assert workflow.resume("crash") == 42
    assert counts(counter) == {"poll": 1, "commit": 1, "downstream": 1}


def test_event_step_commits_again_after_kill_during_the_commit(files: tuple[str, str]) -> None:
    db, counter = files
    run_child_until(db, "event", counter, "committing")
    assert event_states(db) == [("checkpointed", 1, 0)]
    assert workflow.resume("crash") == 42
    # event_checkpointed is at-least-once after the checkpoint: it ran twice, poll once.
    assert counts(counter) == {"poll": 1, "commit": 2, "downstream": 1}


def test_committed_event_is_neither_polled_nor_committed_after_kill_during_downstream(
    files: tuple[str, str],
) -> None:
    db, counter = files
    run_child_until(db, "event", counter, "downstream")
    assert event_states(db) == [("committed", 1, 1)]
    assert workflow.resume("crash") == 42
    assert counts(counter) == {"poll": 1, "commit": 1, "downstream": 2}


def test_an_event_handed_over_to_its_wait_is_delivered_once_after_a_kill(files: tuple[str, str]) -> None:
    db, counter = files
    run_child_until(db, "sent", counter, "downstream")
    workflow.init(storage=db, loop="thread")
    # Stored by the checkpoint alone: no inbox row, the checkpoint records the send.
    assert evkit.sql("SELECT count(*) FROM inbox").fetchall() == [(0,)]
    assert evkit.sql("SELECT source_id, inbox_key FROM event_log WHERE inbox_key IS NOT NULL").fetchall() == [
        ("e1", "k")
    ]
    assert workflow.resume("sent") == 42
    assert counts(counter) == {"downstream": 2}  # the step is at-least-once; the event once
    assert workflow.send_event("sent", "k", "again", event_id="e1") == "e1"  # a known repeat
    assert evkit.sql("SELECT event_id, delivered_to FROM inbox_events").fetchall() == [
        ("e1", "ManualListener")
    ]


def test_timer_waits_only_the_time_left_after_a_kill(files: tuple[str, str]) -> None:
    db, counter = files
    run_child_until(db, "timer", counter, "timer-waiting")
    workflow.init(storage=db, loop="thread")
    [(deadline,)] = evkit.sql("SELECT epoch(deadline) FROM events").fetchall()
    assert workflow.resume("timer") == "timer done"
    finished = time.time()
    assert finished >= deadline
    rows = evkit.sql(
        "SELECT attempt, epoch(deadline) FROM event_log WHERE state = 'waiting' ORDER BY attempt"
    ).fetchall()
    assert rows == [(1, deadline), (2, deadline)]  # the same absolute deadline after restart
