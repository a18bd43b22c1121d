"""SIGKILL a child right after a repeated send_event answered: the event must be stored."""

from __future__ import annotations

import pathlib
import select
import subprocess
import sys

import duckdb
import pytest

pytestmark = [pytest.mark.crash, pytest.mark.slow]

CHILD = pathlib.Path(__file__).with_name("_repeat_child.py")


def read_line(proc: subprocess.Popen[str], *, timeout_seconds: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_seconds)
    if not ready:
        raise TimeoutError(f"the child printed nothing within {timeout_seconds} s")
    return proc.stdout.readline()


def test_repeated_send_answered_before_a_kill_leaves_the_event_stored(tmp_path: pathlib.Path) -> None:
    db = str(tmp_path / "repeat.duckdb")
    proc = subprocess.Popen(
        [sys.executable, "-u", str(CHILD), db],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    lines = []
    try:
        # Kill the moment the repeat answers: whatever it said, the event must then be
        # durable. Its commit is held until the child has printed READY and we release it.
        while not (line := read_line(proc, timeout_seconds=60)).startswith("ANSWERED"):
            assert line, f"the child exited after {lines!r}: {proc.stderr.read() if proc.stderr else ''}"
            lines.append(line)
            if line.startswith("READY parked"):
                proc.stdin.write("release\n")
                proc.stdin.flush()
    finally:
        proc.kill()
        proc.wait(timeout=30)  # DuckDB allows one writing process: wait until it is gone
    assert line == "ANSWERED duplicate=True\n"
    with duckdb.connect(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM inbox WHERE event_id = 'e1'").fetchall() == [(1,)]
