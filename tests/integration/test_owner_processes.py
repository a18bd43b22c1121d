"""One store, many processes: a kernel owns the store; the CLI, scripts and a second
kernel are its clients; the owner is killed during a client's request.

Real processes throughout: kernels run by nbclient, `evkit` commands as subprocesses, an
owner script killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import nbformat
import pytest
from nbclient import NotebookClient

import evkit
from evkit import workflow
from evkit.owner_file import live_owner, owner_file_path, read_owner_file

pytestmark = [pytest.mark.slow, pytest.mark.allow_blocking]

_CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200"}


def evkit_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evkit.cli", *args], capture_output=True, text=True, timeout=60, env=_CHILD_ENV
    )


class Kernel:
    """A real kernel, run by nbclient: each :meth:`run` executes one more cell in it."""

    def __init__(self, client: NotebookClient, notebook: nbformat.NotebookNode) -> None:
        self._client = client
        self._notebook = notebook

    def run(self, source: str) -> list[nbformat.NotebookNode]:
        cell = nbformat.v4.new_code_cell(source)
        self._notebook.cells.append(cell)
        self._client.execute_cell(cell, len(self._notebook.cells) - 1)
        return list(cell.outputs)

    def printed(self, source: str) -> str:
        return "".join(o.get("text", "") for o in self.run(source) if o.output_type == "stream")


@pytest.fixture
def kernels(tmp_path: os.PathLike[str]) -> Iterator[list[Kernel]]:
    """Two kernels working in the test's folder (an owner, then a client); shut down at the end."""
    started: list[Kernel] = []
    contexts = []
    try:
        for _ in range(2):
            notebook = nbformat.v4.new_notebook()
            client = NotebookClient(
                notebook,
                timeout=60,
                kernel_name="python3",
                resources={"metadata": {"path": os.fspath(tmp_path)}},
            )
            context = client.setup_kernel()
            context.__enter__()
            contexts.append(context)
            started.append(Kernel(client, notebook))
        yield started
    finally:
        for context in reversed(contexts):
            context.__exit__(None, None, None)


_OWNER_CELL = """
from evkit import workflow
runtime = workflow.init(storage="store.duckdb")

@workflow.step
def after(event):
    return {"got": event}

handle = workflow.run_async(
    after.step(workflow.wait_for_event(workflow.ManualListener, key="go")), workflow_id="w"
)
"""
_OWNER_READY_CELL = """
await runtime.serving_async()
await handle.wait_waiting(timeout_seconds=30)
print(handle.status.value)
"""


def test_the_cli_lists_queries_and_sends_to_a_run_in_a_kernel(
    kernels: list[Kernel], tmp_path: os.PathLike[str]
) -> None:
    owner = kernels[0]
    store = os.path.join(tmp_path, "store.duckdb")
    owner.run(_OWNER_CELL)
    assert owner.printed(_OWNER_READY_CELL) == "WAITING\n"

    listed = evkit_cli("list", "--json", "--storage", store)
    assert listed.returncode == 0, listed.stderr
    assert [(r["workflow_id"], r["status"]) for r in json.loads(listed.stdout)["runs"]] == [("w", "WAITING")]

    queried = evkit_cli("sql", "SELECT listener, state FROM events", "--json", "--storage", store)
    assert queried.returncode == 0, queried.stderr
    assert json.loads(queried.stdout)["rows"] == [["ManualListener", "waiting"]]
    refused = evkit_cli("sql", "DROP VIEW events", "--storage", store)
    assert (refused.returncode, refused.stderr.split(":")[0]) == (1, "evkit sql")
    assert "only reads" in refused.stderr

    resumed = evkit_cli("resume", "w", "--storage", store)
    assert resumed.returncode == 1
    assert resumed.stderr.startswith(f"evkit resume: store {store!r} is owned by process ")
    assert "`evkit send w KEY '<json>' --storage" in resumed.stderr

    watcher = subprocess.Popen(
        [sys.executable, "-m", "evkit.cli", "watch", "w", "--json", "--storage", store],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_CHILD_ENV,
    )
    try:
        sent = evkit_cli("send", "w", "go", '{"n": 1}', "--storage", store)
        assert sent.returncode == 0, sent.stderr
        assert owner.printed("print(await handle)") == "{'got': {'n': 1}}\n"
        watched, errors = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, errors
    assert json.loads(watched)["status"] == "SUCCESSFUL"
    owner.run("wait = workflow.wait_for_event(workflow.ManualListener, key='x')")
    owner.run("other = workflow.run_async(wait, workflow_id='c')")
    cancelled = evkit_cli("cancel", "c", "--json", "--storage", store)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] == "CANCELED"
    listed = evkit_cli("list", "--json", "--storage", store)
    assert [r["status"] for r in json.loads(listed.stdout)["runs"]] == ["SUCCESSFUL", "CANCELED"]


_CLIENT_CELL = """
import asyncio, threading
from evkit import workflow
from evkit.notebook.display import run_widget

client = workflow.init(storage="store.duckdb")
remote = client.handle("w")
display(remote)
widget = run_widget(remote)
finished = threading.Event()
widget.observe(lambda change: change["new"] == "SUCCESSFUL" and finished.set(), names="status")
print(type(client).__name__, widget.status, widget.states)
"""


def test_a_second_kernel_shows_the_run_live(kernels: list[Kernel]) -> None:
    owner, second = kernels
    owner.run(_OWNER_CELL)
    owner.printed(_OWNER_READY_CELL)

    outputs = second.run(_CLIENT_CELL)
    views = [o for o in outputs if o.output_type == "display_data"]
    assert "application/vnd.jupyter.widget-view+json" in views[0]["data"]
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert printed == "ClientRuntime WAITING {'ManualListener': 'waiting', 'after': 'pending'}\n"

    owner.run("workflow.send_event('w', 'go', 2)\nawait handle")
    printed = second.printed(
        "print(await asyncio.to_thread(finished.wait, 30), widget.status, widget.states)"
    )
    assert printed == "True SUCCESSFUL {'ManualListener': 'committed', 'after': 'done'}\n"
    # Runs start only in the owner: the client's refusal names it.
    refused = second.printed(
        "import evkit\ntry:\n    workflow.resume('w')\nexcept evkit.StoreOwnedElsewhereError as exc:\n"
        "    print(type(exc).__name__, exc.pid == client.owner.pid)\n"
    )
    assert refused == "StoreOwnedElsewhereError True\n"


_KILLED_OWNER = """
import asyncio, logging, sys
from evkit import workflow

log = logging.getLogger("evkit")
log.setLevel(logging.DEBUG)
log.addHandler(logging.StreamHandler(sys.stdout))
workflow.init(storage=sys.argv[1], loop="thread")

@workflow.step
def after(event):
    return {"got": event}

handle = workflow.run_async(
    after.step(workflow.wait_for_event(workflow.ManualListener, key="go")), workflow_id="w"
)
asyncio.run(handle.wait_waiting(timeout_seconds=30))
asyncio.run(workflow.get_runtime().serving_async())
print("READY", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def global_runtime() -> Iterator[None]:
    """This process's evkit runtime (a client, then an owner) is shut at the end."""
    yield
    workflow.shutdown()


@pytest.mark.crash
def test_an_owner_killed_during_a_request_leaves_a_clear_error_and_an_intact_store(
    tmp_path: os.PathLike[str], global_runtime: None
) -> None:
    store = os.path.join(tmp_path, "store.duckdb")
    owner = subprocess.Popen(
        [sys.executable, "-u", "-c", _KILLED_OWNER, store],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_CHILD_ENV,
    )
    try:
        assert owner.stdout is not None
        while (line := owner.stdout.readline()) != "READY\n":
            assert line, "the owner ended before it was READY"
        info = read_owner_file(store)
        assert info is not None
        assert info.pid == owner.pid

        client = workflow.init(storage=store)
        assert isinstance(client, evkit.ClientRuntime)
        assert workflow.get_status("w") is workflow.WAITING
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(workflow.get_output, "w")  # a long poll, in flight at the owner
            while "a client follows run 'w'" not in (line := owner.stdout.readline()):
                assert line, "the owner ended before the client's request reached it"
            owner.kill()
            owner.wait()
            with pytest.raises(evkit.OwnerUnreachableError) as in_flight:
                waiting.result(timeout=60)
        assert (in_flight.value.pid, in_flight.value.host) == (info.pid, info.host)
        with pytest.raises(
            evkit.OwnerUnreachableError,
            match=rf"^The owner of store '{store}' \(process {owner.pid} on host .*\) is gone: it exited",
        ):
            workflow.list_all()
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()

    # The dead owner's file stays, recognised as stale; the store is intact and free.
    assert os.path.exists(owner_file_path(store))
    assert live_owner(store) is None
    listed = evkit_cli("list", "--json", "--storage", store)
    assert listed.returncode == 0, listed.stderr
    assert [(r["workflow_id"], r["status"]) for r in json.loads(listed.stdout)["runs"]] == [
        ("w", "RESUMABLE")
    ]

    # Only when asked (init again) does this process take the store over, and resume the run.
    restarted = workflow.init(storage=store, loop="thread")
    assert isinstance(restarted, evkit.Runtime)
    asyncio.run(restarted.serving_async())
    owned = read_owner_file(store)
    assert owned is not None
    assert owned.pid == os.getpid()
    handle = workflow.resume_async("w")
    workflow.send_event("w", "go", 5)
    assert handle.result(timeout=30) == {"got": 5}
    workflow.shutdown()
    assert not os.path.exists(owner_file_path(store))
