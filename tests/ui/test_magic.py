"""%load_ext evkit in a real IPython shell: the SQL magics and short error messages."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from evkit import workflow

pytestmark = pytest.mark.slow  # an IPython shell and a real store


@pytest.fixture
def shell(runtime):
    """A fresh IPython shell with evkit's extension loaded and no history file."""
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_cell("%load_ext evkit", store_history=False)
    yield ip
    InteractiveShell.clear_instance()


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@workflow.step
def one() -> int:
    return 1


def test_line_and_cell_magics_return_dataframes(shell):
    one.step().run(workflow_id="magic-run")

    line = shell.run_cell("%evkit_sql SELECT workflow_id, status FROM workflows")
    cell = shell.run_cell("%%evkit_sql\nSELECT step_id, state\nFROM steps WHERE workflow_id = 'magic-run'")

    assert line.success
    assert cell.success
    assert isinstance(line.result, pd.DataFrame)
    assert line.result.to_dict("records") == [{"workflow_id": "magic-run", "status": "SUCCESSFUL"}]
    assert cell.result.to_dict("records") == [{"step_id": "one", "state": "succeeded"}]


def test_line_magic_expands_python_variables(shell):
    one.step().run(workflow_id="w-var")
    shell.user_ns["wid"] = "w-var"
    result = shell.run_cell("%evkit_sql SELECT status FROM workflows WHERE workflow_id = '{wid}'")
    assert result.result.to_dict("records") == [{"status": "SUCCESSFUL"}]


def test_bad_sql_gives_one_short_usage_error_without_traceback(shell, capsys):
    result = shell.run_cell("%evkit_sql SELECT nope FROM workflows")

    assert type(result.error_in_exec).__name__ == "UsageError"
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "UsageError: evkit_sql: Store " in text
    assert 'Referenced column "nope" not found' in text
    assert "Traceback" not in text
    assert len(text.strip().splitlines()) <= 3


def test_empty_magic_says_what_to_write(shell, capsys):
    result = shell.run_cell("%evkit_sql")
    assert type(result.error_in_exec).__name__ == "UsageError"
    assert "%evkit_sql needs a query" in capsys.readouterr().err


def test_send_event_to_unknown_run_shows_a_short_traceback(shell, capsys):
    result = shell.run_cell("from evkit import workflow\nworkflow.send_event('nobody', 'go', 1)")

    assert type(result.error_in_exec).__name__ == "WorkflowNotFoundError"
    text = plain(capsys.readouterr().out)
    assert "WorkflowNotFoundError: Run 'nobody' is not in store" in text
    assert "evkit/" not in text
    assert "concurrent" not in text
    assert "asyncio" not in text
    assert "----> 2 workflow.send_event('nobody', 'go', 1)" in text  # points at the user's call
    assert len(text.strip().splitlines()) < 12


def test_unstorable_payload_error_is_short_and_stores_nothing(shell, capsys):
    one.step().run(workflow_id="target")
    result = shell.run_cell(
        "import threading\nfrom evkit import workflow\nworkflow.send_event('target', 'go', threading.Lock())"
    )

    assert isinstance(result.error_in_exec, TypeError)
    text = plain(capsys.readouterr().out)
    assert "cannot be stored" in text
    assert "Nothing was stored." in text
    # Raised in send_event itself (`from None`): the cell's frame and send_event's only.
    assert "runtime.py" not in text
    assert "codec.py" not in text
    assert "During handling" not in text
    assert workflow.sql("SELECT count(*) FROM inbox_events").fetchall() == [(0,)]


def test_sql_failing_while_it_runs_is_also_a_short_usage_error(shell, capsys):
    one.step().run(workflow_id="not-a-number")
    result = shell.run_cell("%evkit_sql SELECT CAST(workflow_id AS INTEGER) FROM workflows")

    assert type(result.error_in_exec).__name__ == "UsageError"
    err = capsys.readouterr().err
    assert err.startswith("UsageError: evkit_sql: Conversion Error")
    assert "Traceback" not in err
