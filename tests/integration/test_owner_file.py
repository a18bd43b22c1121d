"""The owner file beside a store: private, atomic, stale once its process is gone."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from evkit.owner_file import (
    OwnerInfo,
    is_stale,
    live_owner,
    owner_file_path,
    pid_alive,
    read_owner_file,
    remove_owner_file,
    write_owner_file,
)


def _info(storage: Path, pid: int, secret: str = "s3cret") -> OwnerInfo:
    return OwnerInfo(
        url="http://127.0.0.1:1", secret=secret, pid=pid, host=socket.gethostname(), storage=str(storage)
    )


def test_the_file_is_written_for_its_user_only_even_over_a_readable_leftover(tmp_path: Path) -> None:
    storage = tmp_path / "store.duckdb"
    leftover = Path(f"{owner_file_path(str(storage))}.{os.getpid()}.tmp")
    leftover.write_text("{}")
    leftover.chmod(0o644)
    path = write_owner_file(_info(storage, os.getpid()))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not leftover.exists()
    assert read_owner_file(str(storage)) == _info(storage, os.getpid())
    assert live_owner(str(storage)) == _info(storage, os.getpid())


@pytest.mark.slow  # a child process
def test_an_owner_that_exited_is_stale_even_before_it_is_reaped(tmp_path: Path) -> None:
    storage = tmp_path / "store.duckdb"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # it exited; still a zombie
    try:
        write_owner_file(_info(storage, child.pid))
        assert not pid_alive(child.pid)
        assert is_stale(_info(storage, child.pid))
        assert live_owner(str(storage)) is None
        assert read_owner_file(str(storage)) is not None  # still there: the next owner replaces it
    finally:
        child.wait()


def test_a_garbled_file_reads_as_none_and_only_its_writer_removes_it(tmp_path: Path) -> None:
    storage = tmp_path / "store.duckdb"
    Path(owner_file_path(str(storage))).write_text("not json")
    assert read_owner_file(str(storage)) is None
    write_owner_file(_info(storage, os.getpid(), secret="newer"))
    remove_owner_file(_info(storage, os.getpid(), secret="older"))  # a closing older owner
    assert read_owner_file(str(storage)) is not None
    remove_owner_file(_info(storage, os.getpid(), secret="newer"))
    assert not os.path.exists(owner_file_path(str(storage)))


def test_an_owner_file_others_may_write_is_not_trusted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = tmp_path / "store.duckdb"
    path = write_owner_file(_info(storage, os.getpid()))
    os.chmod(path, 0o666)
    assert read_owner_file(str(storage)) is None
    assert "ignoring the owner file" in caplog.text
    write_owner_file(_info(storage, os.getpid()))  # the owner's own write makes it private again
    assert read_owner_file(str(storage)) == _info(storage, os.getpid())
