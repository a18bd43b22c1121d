"""A ``workflow.init()`` that cannot open its store changes nothing.

The runtime that was current stays current and open, its live runs keep running, and no
later call falls back to ``./evkit.duckdb``.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

import evkit
from evkit import workflow

# The child holds the file (DuckDB's lock) until its stdin closes.
HOLD_STORE = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("READY", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def working(
    store_path: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[evkit.Runtime]:
    """The current runtime, with a run waiting on key "go". The working directory is
    empty, so that a fallback to ``./evkit.duckdb`` would show."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("EVKIT_STORAGE", raising=False)
    runtime = workflow.init(storage=store_path, loop="thread")
    yield runtime
    workflow.shutdown()
    assert list(cwd.iterdir()) == []


def _missing_directory(tmp_path: pathlib.Path) -> str:
    return str(tmp_path / "no-such-dir" / "evkit.duckdb")


def _a_directory(tmp_path: pathlib.Path) -> str:
    (tmp_path / "a-dir").mkdir()
    return str(tmp_path / "a-dir")


def _corrupt_file(tmp_path: pathlib.Path) -> str:
    path = tmp_path / "corrupt.duckdb"
    path.write_bytes(b"\x00not a database\xff" * 512)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("bad_store", "error", "message"),
    [
        (
            _missing_directory,
            evkit.StoreError,
            r"^Store '.*/no-such-dir/evkit\.duckdb': the directory '.*' does not exist",
        ),
        (
            _a_directory,
            evkit.StoreError,
            r"^Store '.*/a-dir' is a directory, not a file\. Pass the path of a file",
        ),
        (_corrupt_file, evkit.NotAStoreError, r"^'.*/corrupt\.duckdb' is not a DuckDB file evkit can open"),
    ],
    ids=["missing-directory", "directory", "corrupt-file"],
)
def test_init_on_a_store_that_cannot_be_opened_keeps_the_current_runtime_and_its_runs(
    working: evkit.Runtime,
    tmp_path: pathlib.Path,
    bad_store: Callable[[pathlib.Path], str],
    error: type[Exception],
    message: str,
) -> None:
    handle = workflow.run_async(
        workflow.wait_for_event(workflow.ManualListener, key="go"), workflow_id="live"
    )
    with pytest.raises(error, match=message):
        workflow.init(storage=bad_store(tmp_path), loop="thread")
    _assert_unchanged(working, handle)


@pytest.mark.slow
def test_init_on_a_store_another_process_holds_keeps_the_current_runtime_and_its_runs(
    working: evkit.Runtime, tmp_path: pathlib.Path
) -> None:
    handle = workflow.run_async(
        workflow.wait_for_event(workflow.ManualListener, key="go"), workflow_id="live"
    )
    held = str(tmp_path / "held.duckdb")
    with subprocess.Popen(
        [sys.executable, "-u", "-c", HOLD_STORE, held],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdin is not None
        try:
            assert child.stdout.readline() == "READY\n"
            with pytest.raises(
                evkit.StoreLockedError, match=rf"^Store '{held}' is open in process {child.pid} "
            ):
                workflow.init(storage=held, loop="thread")
        finally:
            child.stdin.close()
            child.wait(timeout=30)
    _assert_unchanged(working, handle)


def _assert_unchanged(working: evkit.Runtime, handle: workflow.RunHandle) -> None:
    assert workflow.get_runtime() is working
    assert not working.closed
    assert handle.status is workflow.WAITING or handle.status is workflow.RUNNING
    workflow.send_event("live", "go", "still here")
    assert handle.result(timeout=30) == "still here"
    assert workflow.list_all() == [("live", workflow.SUCCESSFUL)]
