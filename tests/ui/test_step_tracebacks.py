"""A failed step in a notebook cell shows the user's frames, not evkit's (a real IPython
shell with %load_ext evkit); %tb and sys.last_value keep the full traceback."""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import evkit

pytestmark = pytest.mark.slow  # an IPython shell and a real store


@pytest.fixture
def shell(runtime: evkit.Runtime) -> Iterator[InteractiveShell]:
    """A fresh IPython shell with evkit's extension loaded and no history file."""
    config = Config()
    config.HistoryManager.enabled = False
    ip = InteractiveShell.instance(config=config)
    ip.run_cell("%load_ext evkit", store_history=False)
    yield ip
    InteractiveShell.clear_instance()


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


CELL = """
from evkit import workflow

@workflow.step
def divide(x):
    return helper(x)

def helper(x):
    return 1 / x

class Flaky(workflow.EventListener):
    async def poll_for_event(self, key):
        raise ConnectionError("broker unreachable")
"""


@pytest.mark.parametrize(
    ("call", "user_line"),
    [
        ("divide.step(0).run(workflow_id='d')", "return 1 / x"),
        (
            "workflow.wait_for_event(Flaky, 'k').run(workflow_id='f')",
            'raise ConnectionError("broker unreachable")',
        ),
    ],
)
def test_a_failed_step_shows_only_the_users_frames(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], call: str, user_line: str
) -> None:
    assert shell.run_cell(CELL).success
    capsys.readouterr()
    result = shell.run_cell(call)

    assert isinstance(result.error_in_exec, evkit.StepFailedError)
    text = plain(capsys.readouterr().out)
    assert user_line in text
    assert f"----> 1 {call}" in text
    assert "The above exception was the direct cause of the following exception" in text
    assert "evkit/" not in text
    assert "File " not in text  # every frame shown is a cell's ("Cell In[...]")
    # The full traceback is kept for %tb and %debug.
    full = "".join(traceback.format_exception(sys.last_value))
    assert "evkit/execution/" in full
