"""The ``evkit`` command against a real store file, each command in a process of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import duckdb
import pytest

from evkit import workflow

pytestmark = pytest.mark.slow  # every test starts Python processes

_CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200"}


def evkit_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evkit.cli", *args], capture_output=True, text=True, timeout=60, env=_CHILD_ENV
    )


@pytest.fixture
def start_cli() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``evkit ...`` children; any still running at teardown are killed (a failed
    test must not leave a watcher behind)."""
    children: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        children.append(_popen_cli(*args))
        return children[-1]

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.communicate()


def _popen_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "evkit.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_CHILD_ENV,
    )


def read_until(stream: object, needle: str) -> str:
    """Read lines of a child's stream until one contains ``needle``; return all read."""
    seen = []
    while True:
        line = stream.readline()  # type: ignore[attr-defined]
        assert line, f"the child ended before printing {needle!r}; it printed:\n{''.join(seen)}"
        seen.append(line)
        if needle in line:
            return "".join(seen)


@workflow.step
def double(x: int) -> int:
    return 2 * x


@pytest.fixture
def store_with_runs(store_path: str) -> str:
    """A store holding one finished run ('done') and one left RESUMABLE while it waits on
    a ManualListener with key 'x' ('open'), closed so the CLI's processes can open it."""
    workflow.init(storage=store_path, loop="thread")
    double.step(21).run(workflow_id="done")
    handle = workflow.run_async(
        double.step(workflow.wait_for_event(workflow.ManualListener, key="x")), workflow_id="open"
    )
    assert handle.runtime.call(lambda _: handle.wait_waiting(timeout_seconds=10)) is None
    workflow.shutdown()
    return store_path


def test_list_status_and_sql_print_tables(store_with_runs: str) -> None:
    listed = evkit_cli("list", "--storage", store_with_runs)
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "done" in line or "open" in line]
    assert "SUCCESSFUL" in rows[0]
    assert "done" in rows[0]
    assert "RESUMABLE" in rows[1]
    assert "open" in rows[1]
    status = evkit_cli("status", "open", "--storage", store_with_runs)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("run open: RESUMABLE\n")
    assert "ManualListener" in status.stdout
    assert "waiting" in status.stdout
    sql = evkit_cli(
        "sql", "SELECT workflow_id, output FROM workflows ORDER BY 1", "--storage", store_with_runs
    )
    assert sql.returncode == 0, sql.stderr
    assert "42" in sql.stdout


def test_json_documents_have_the_documented_keys(store_with_runs: str) -> None:
    listed = json.loads(evkit_cli("list", "--json", "--storage", store_with_runs).stdout)
    assert listed["storage"] == store_with_runs
    assert [(r["workflow_id"], r["status"]) for r in listed["runs"]] == [
        ("done", "SUCCESSFUL"),
        ("open", "RESUMABLE"),
    ]
    assert set(listed["runs"][0]) == {"workflow_id", "status", "created_at", "updated_at", "ended_at"}
    status = json.loads(evkit_cli("status", "done", "--json", "--storage", store_with_runs).stdout)
    assert (status["status"], status["output"], status["error"]) == ("SUCCESSFUL", "42", None)
    assert [(s["step_id"], s["state"], s["result"]) for s in status["steps"]] == [
        ("double", "succeeded", "42")
    ]
    waiting = json.loads(evkit_cli("status", "open", "--json", "--storage", store_with_runs).stdout)
    assert [(e["listener"], e["state"]) for e in waiting["events"]] == [("ManualListener", "waiting")]
    sql = json.loads(
        evkit_cli(
            "sql",
            "SELECT workflow_id, status FROM workflows ORDER BY 1",
            "--json",
            "--storage",
            store_with_runs,
        ).stdout
    )
    assert sql == {
        "columns": ["workflow_id", "status"],
        "rows": [["done", "SUCCESSFUL"], ["open", "RUNNING"]],
    }


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["status", "r"],
        ["sql", "SELECT 1"],
        ["watch", "r"],
        ["send", "r", "k", "1"],
        ["cancel", "r"],
        ["resume", "r"],
    ],
)
def test_a_missing_store_is_exit_2_and_nothing_is_created(tmp_path: object, command: list[str]) -> None:
    typo = os.path.join(str(tmp_path), "typo.duckdb")
    result = evkit_cli(*command, "--storage", typo)
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"evkit {command[0]}: store {typo!r} does not exist. Pass the store's file with --storage PATH"
    )
    assert "Traceback" not in result.stderr
    assert os.listdir(str(tmp_path)) == []


def test_unknown_run_and_bad_sql_are_exit_1_with_cli_advice(store_with_runs: str) -> None:
    unknown = evkit_cli("status", "nope", "--storage", store_with_runs)
    assert unknown.returncode == 1
    assert unknown.stderr == (
        f"evkit status: run 'nope' is not in store {store_with_runs!r}. List the runs with "
        f"`evkit list --storage {store_with_runs}`.\n"
    )
    bad_sql = evkit_cli("sql", "SELEC 1", "--storage", store_with_runs)
    assert bad_sql.returncode == 1
    assert bad_sql.stderr.startswith("evkit sql: the query failed: Parser Error: syntax error")


def test_sql_refuses_to_drop_a_view_and_the_store_still_works(store_with_runs: str) -> None:
    dropped = evkit_cli("sql", "DROP VIEW workflows", "--storage", store_with_runs)
    assert dropped.returncode == 1
    assert dropped.stderr.startswith(
        "evkit sql: evkit sql only reads: the query would change the store, which was not changed"
    )
    listed = evkit_cli("list", "--json", "--storage", store_with_runs)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["runs"]) == 2


def test_views_dropped_by_hand_are_named_read_only_and_recreated_by_a_writable_open(
    store_with_runs: str,
) -> None:
    con = duckdb.connect(store_with_runs)
    con.execute("DROP VIEW workflows")
    con.execute("DROP VIEW event_log")
    con.close()
    listed = evkit_cli("list", "--storage", store_with_runs)
    assert listed.returncode == 1
    assert listed.stderr.startswith(
        f"evkit list: Store {store_with_runs!r} has no views 'event_log', 'workflows' (dropped by hand?). "
        "A read-only open cannot recreate them; opening the store writable once does"
    )
    sent = evkit_cli("send", "open", "x", "4", "--storage", store_with_runs)  # opens it writable
    assert sent.returncode == 0, sent.stderr
    listed = evkit_cli("list", "--json", "--storage", store_with_runs)
    assert listed.returncode == 0, listed.stderr
    assert [r["workflow_id"] for r in json.loads(listed.stdout)["runs"]] == ["done", "open"]


def test_send_then_resume_finishes_the_run(store_with_runs: str) -> None:
    sent = evkit_cli("send", "open", "x", '{"n": 4}', "--json", "--storage", store_with_runs)
    assert sent.returncode == 0, sent.stderr
    document = json.loads(sent.stdout)
    assert (document["workflow_id"], document["key"], document["status"]) == ("open", "x", "RESUMABLE")
    assert document["event_id"]
    bad = evkit_cli("send", "open", "x", "{n: 4}", "--storage", store_with_runs)
    assert bad.returncode == 2
    assert bad.stderr.startswith("evkit send: the payload '{n: 4}' is not JSON")
    long_key = evkit_cli("send", "open", "k" * 201, "--storage", store_with_runs)
    assert long_key.returncode == 2
    assert long_key.stderr.startswith("evkit send: KEY must have 1 to 200 characters, got 201")


def test_resume_prints_the_output_of_the_run(store_with_runs: str) -> None:
    assert evkit_cli("send", "open", "x", "5", "--storage", store_with_runs).returncode == 0
    resumed = evkit_cli("resume", "open", "--json", "--storage", store_with_runs)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {"workflow_id": "open", "status": "SUCCESSFUL", "output": 10}
    again = evkit_cli("resume", "done", "--storage", store_with_runs)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "42\n"


def test_resume_watch_shows_the_runs_steps_on_stderr_as_they_change(store_with_runs: str) -> None:
    assert evkit_cli("send", "open", "x", "3", "--storage", store_with_runs).returncode == 0
    resumed = evkit_cli("resume", "open", "--watch", "--storage", store_with_runs)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == "6\n"
    final = resumed.stderr[resumed.stderr.rindex("run open: ") :]
    assert final.startswith("run open: SUCCESSFUL\n")
    assert "│ committed " in final
    assert "│ done " in final


def test_cancel_marks_a_resumable_run_canceled(store_with_runs: str) -> None:
    cancelled = evkit_cli("cancel", "open", "--json", "--storage", store_with_runs)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout) == {"workflow_id": "open", "status": "CANCELED"}
    resumed = evkit_cli("resume", "open", "--storage", store_with_runs)
    assert resumed.returncode == 1
    assert "Traceback" not in resumed.stderr


def test_resume_of_a_waiting_run_says_how_to_send_its_event_and_ctrl_c_leaves_it_resumable(
    store_with_runs: str, start_cli: Callable[..., subprocess.Popen[str]]
) -> None:
    child = start_cli("resume", "open", "--storage", store_with_runs)
    said = read_until(child.stderr, "send it with")
    assert said == (
        "evkit resume: run open is WAITING:\n"
        "  step 'ManualListener' waits for an event with key 'x' (ManualListener); send it with: "
        f"evkit send open x '<json>' --storage {store_with_runs}\n"
    )
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130
    assert out == ""
    assert err.endswith(
        "evkit resume: interrupted: run open stopped here and is RESUMABLE; continue it with "
        f"`evkit resume open --storage {store_with_runs}`.\n"
    )
    assert "Traceback" not in err
    listed = json.loads(evkit_cli("list", "--json", "--storage", store_with_runs).stdout)
    assert [r["status"] for r in listed["runs"]] == ["SUCCESSFUL", "RESUMABLE"]


# A holder that serves no other process (not evkit, or an evkit from before the control
# endpoint): it writes no owner file, so the commands can only say who holds the store.
_HOLDER = """
import sys
import duckdb
con = duckdb.connect(sys.argv[1])
print("READY", flush=True)
sys.stdin.read()
con.close()
"""


@pytest.fixture
def held_store(store_with_runs: str) -> Iterator[tuple[str, int]]:
    """The store, held by a child process that serves no control endpoint (it prints READY
    once it holds it and lets go when its stdin closes)."""
    holder = subprocess.Popen(
        [sys.executable, "-u", "-c", _HOLDER, store_with_runs],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_CHILD_ENV,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "READY\n"
        yield store_with_runs, holder.pid
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_store_held_by_another_process_is_named_in_cli_words(held_store: tuple[str, int]) -> None:
    path, pid = held_store
    listed = evkit_cli("list", "--storage", path)
    assert listed.returncode == 1
    assert listed.stderr.startswith(f"evkit list: store {path!r} is held by another process (pid {pid}): ")
    assert "Run `evkit list` again once that process has closed the store" in listed.stderr
    sent = evkit_cli("send", "open", "x", "1", "--storage", path)
    assert sent.returncode == 1
    assert sent.stderr.startswith(f"evkit send: store {path!r} is held by another process (pid {pid}): ")
    assert "workflow.serve_events()" in sent.stderr
    watched = evkit_cli("watch", "open", "--storage", path)
    assert watched.returncode == 1
    assert watched.stderr.startswith(f"evkit watch: store {path!r} is held by another process (pid {pid}): ")
    assert watched.stderr.endswith("start it as `evkit resume ID --watch`.\n")


def test_watch_shows_the_run_until_it_ends(
    store_with_runs: str, start_cli: Callable[..., subprocess.Popen[str]]
) -> None:
    watcher = start_cli("watch", "open", "--storage", store_with_runs)
    json_watcher = start_cli("watch", "open", "--json", "--storage", store_with_runs)
    assert "ManualListener" in read_until(watcher.stdout, "│ waiting ")
    assert evkit_cli("send", "open", "x", "8", "--storage", store_with_runs).returncode == 0
    assert evkit_cli("resume", "open", "--storage", store_with_runs).stdout == "16\n"
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    assert "run open: SUCCESSFUL" in out
    assert "committed" in out
    out, err = json_watcher.communicate(timeout=30)
    assert json_watcher.returncode == 0, err
    document = json.loads(out)
    assert (document["status"], document["output"]) == ("SUCCESSFUL", "16")
