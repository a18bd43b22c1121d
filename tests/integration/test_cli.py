"""The ``evkit`` command against a real store file, in a separate process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from evkit import workflow


def evkit_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evkit.cli", *args], capture_output=True, text=True, timeout=60
    )


@workflow.step
def double(x: int) -> int:
    return 2 * x


@pytest.fixture
def store_with_runs(store_path: str) -> str:
    """A store holding one finished run and one left RESUMABLE, closed so the CLI's own
    process can open it."""
    workflow.init(storage=store_path, loop="thread")
    double.step(21).run(workflow_id="done")
    workflow.run_async(
        double.step(workflow.wait_for_event(workflow.ManualListener, key="x")), workflow_id="open"
    )
    workflow.shutdown()
    return store_path


@pytest.mark.slow
def test_list_status_and_sql(store_with_runs: str) -> None:
    listed = evkit_cli("list", "--storage", store_with_runs)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["done\tSUCCESSFUL", "open\tRESUMABLE"]
    status = evkit_cli("status", "done", "--storage", store_with_runs)
    assert status.stdout.strip() == "SUCCESSFUL"
    sql = evkit_cli(
        "sql", "SELECT workflow_id, output FROM workflows ORDER BY 1", "--storage", store_with_runs
    )
    assert sql.returncode == 0
    assert "42" in sql.stdout


@pytest.mark.slow
def test_resume_prints_the_output_of_a_finished_run(store_with_runs: str) -> None:
    resumed = evkit_cli("resume", "done", "--storage", store_with_runs)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "42"


@pytest.mark.slow
def test_errors_are_one_line_with_exit_status_2(store_with_runs: str) -> None:
    unknown = evkit_cli("status", "nope", "--storage", store_with_runs)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("evkit status: Run 'nope' is not in store")
    bad_sql = evkit_cli("sql", "SELEC 1", "--storage", store_with_runs)
    assert bad_sql.returncode == 2
    assert "syntax error" in bad_sql.stderr


@pytest.mark.slow
def test_a_store_held_by_another_process_is_named_in_the_error(store_with_runs: str) -> None:
    workflow.init(storage=store_with_runs, loop="thread")
    try:
        held = evkit_cli("list", "--storage", store_with_runs)
    finally:
        workflow.shutdown()
    assert held.returncode == 2
    assert held.stderr.startswith(f"evkit list: Store '{store_with_runs}' is open in process ")
