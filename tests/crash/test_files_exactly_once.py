"""SIGKILL a child whose FileListener wait has its file but no checkpoint yet: the resumed
run (in this process) gets the same file again, once."""

from __future__ import annotations

import os
import pathlib
import select
import subprocess
import sys
from collections.abc import Iterator

import pytest

import evkit
from evkit import workflow

pytestmark = [pytest.mark.crash, pytest.mark.slow]

CHILD = pathlib.Path(__file__).with_name("_files_child.py")


def read_line(proc: subprocess.Popen[str], *, timeout_seconds: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_seconds)
    if not ready:
        raise TimeoutError(f"the child printed nothing within {timeout_seconds} s")
    return proc.stdout.readline()


@pytest.fixture
def db(tmp_path: pathlib.Path) -> Iterator[str]:
    yield str(tmp_path / "crash.duckdb")
    workflow.shutdown()


def test_a_file_taken_but_not_checkpointed_before_a_kill_is_delivered_after_the_resume(
    db: str, tmp_path: pathlib.Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    env = dict(os.environ, EVKIT_CRASH_AT="file-taken")
    proc = subprocess.Popen(
        [sys.executable, "-u", str(CHILD), db, str(inbox / "*.csv")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert read_line(proc, timeout_seconds=60) == "WAITING\n"
        (inbox / "a.csv").write_bytes(b"a")
        assert read_line(proc, timeout_seconds=60) == "READY file-taken a.csv\n"
    finally:
        proc.kill()
        proc.wait(timeout=30)  # DuckDB allows one writing process: wait until it is gone
    assert proc.returncode == -9

    workflow.init(storage=db, loop="thread")
    assert evkit.sql("SELECT state, source_id FROM events").fetchall() == [("waiting", None)]
    # The file is older than the resumed wait, but newer than the wait's first start.
    assert workflow.resume("files") == "a.csv"
    stat = (inbox / "a.csv").stat()
    assert evkit.sql("SELECT state, poll_attempts, source_id FROM events").fetchall() == [
        ("committed", 2, f"file:files:{inbox / 'a.csv'}:1:{stat.st_mtime_ns}")
    ]
