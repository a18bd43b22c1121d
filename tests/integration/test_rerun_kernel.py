"""Re-runs in a real kernel (nbclient): a cell defines a step, a later cell redefines it.

What a notebook user does: run, see a step fail, fix its cell, run the DAG again under
the same id. Counters in the kernel's globals count the executions of the unchanged
upstream step, the polls of the checkpointed event and its commits at the source.
"""

from __future__ import annotations

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.slow, pytest.mark.allow_blocking]

CELLS = [
    """
import collections, json
from evkit import workflow
workflow.init(storage='store.duckdb')
COUNTS = collections.Counter()

class Source(workflow.EventListener):
    # A source that hands out one event per poll and counts its acknowledgements.
    async def poll_for_event(self, payload):
        COUNTS['poll'] += 1
        return payload

    async def event_checkpointed(self, event):
        COUNTS['commit'] += 1

@workflow.step
def load():
    COUNTS['load'] += 1
    return 21
""",
    """
@workflow.step(max_retries=0)
def combine(x, event):
    COUNTS['combine'] += 1
    raise ValueError('bug')
""",
    """
def dag():
    return combine.step(load.step(), workflow.wait_for_event(Source, 5, name='approval'))

try:
    dag().run(workflow_id='w1')
except workflow.WorkflowExecutionError as exc:
    first = type(exc.__cause__).__name__
""",
    """
@workflow.step(max_retries=0)
def combine(x, event):
    COUNTS['combine'] += 1
    return x * 2 + event
""",
    """
handle = workflow.run_async(dag(), workflow_id='w1')
result = await handle
""",
    """
print(json.dumps({
    "first": first,
    "result": result,
    "counts": dict(COUNTS),
    "plan": handle.plan.summary(),
    "events": workflow.sql("SELECT poll_attempts, commits FROM events").fetchall(),
}))
""",
]


def test_a_redefined_step_reruns_and_the_upstream_and_event_are_reused(tmp_path: os.PathLike[str]) -> None:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.strip()) for c in CELLS])
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": os.fspath(tmp_path)}}
    ).execute()
    printed = notebook.cells[-1].outputs[0]["text"]
    assert json.loads(printed) == {
        "first": "ValueError",
        "result": 47,
        "counts": {"load": 1, "poll": 1, "commit": 1, "combine": 2},
        "plan": "Run 'w1' re-run: reused 2 steps: load, approval; re-running 1 step: combine (code changed).",
        "events": [[1, 1]],
    }
    # The re-run said so in its cell (the log line a notebook shows).
    logged = "".join(o.get("text", "") for o in notebook.cells[4].outputs)
    assert "re-running 1 step: combine (code changed)" in logged
