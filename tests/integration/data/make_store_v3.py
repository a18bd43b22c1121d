"""Writes tests/integration/data/store_v3.duckdb(.gz) with the evkit that had schema version 3
(before re-runs): a failed run with a committed event. Run with that version on PYTHONPATH."""

import contextlib
import sys

import evkit
from evkit import workflow

path = sys.argv[1]
workflow.init(storage=path, loop="thread")


@workflow.step
def load() -> int:
    return 21


@workflow.step(max_retries=0)
def double(x: int, event: object) -> int:
    raise ValueError("bug")


node = double.step(load.step(), workflow.wait_for_event(workflow.ManualListener, key="k", name="approval"))
handle = workflow.run_async(node, workflow_id="w1")
workflow.send_event("w1", "k", 5)
with contextlib.suppress(evkit.StepFailedError):
    handle.result()
print(workflow.get_status("w1"))
workflow.shutdown()
