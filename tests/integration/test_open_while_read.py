"""``workflow.init`` on a store another process reads for a moment (an ``evkit`` command).

Such a reader serves nothing, so there is no owner to connect to; ``init`` must open the
store once the reader lets go instead of failing (it used to wait only for an owner file).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from evkit import client, workflow
from evkit.runtime import Runtime

pytestmark = pytest.mark.slow  # starts a Python process

_READER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("READING", flush=True)
sys.stdin.readline()
con.close()
print("CLOSED", flush=True)
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "evkit.duckdb")
    workflow.init(storage=path, loop="thread")
    workflow.shutdown()
    yield path
    workflow.shutdown()


def test_init_opens_the_store_once_a_reading_process_lets_go(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = subprocess.Popen(
        [sys.executable, "-u", "-c", _READER, store],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert reader.stdin is not None
    assert reader.stdout is not None
    try:
        assert reader.stdout.readline() == "READING\n"
        # init found the store held and looks for an owner: now the reader lets go.
        looked_for_owner = threading.Event()
        real_live_owner = client.live_owner

        def live_owner(storage: str) -> object:
            looked_for_owner.set()
            return real_live_owner(storage)

        monkeypatch.setattr(client, "live_owner", live_owner)
        opened: list[object] = []
        opening = threading.Thread(target=lambda: opened.append(workflow.init(storage=store, loop="thread")))
        opening.start()
        assert looked_for_owner.wait(timeout=30)
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.stdout.readline() == "CLOSED\n"
        opening.join(timeout=30)
        assert opened, "workflow.init raised (see the thread's exception above)"
        assert isinstance(opened[0], Runtime)
        assert workflow.sql("SELECT count(*) FROM workflows").fetchall() == [(0,)]
    finally:
        reader.kill()
        reader.wait(timeout=30)
