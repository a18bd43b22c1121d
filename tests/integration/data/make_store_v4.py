"""Writes tests/integration/data/store_v4.duckdb(.gz) with the evkit whose schema version 4
stored every step's fingerprints as a pickled dict: run ``w1`` fails in ``double`` after
``load`` and event ``approval`` (key ``k``, payload 5); run ``w2`` succeeds with a list of
step results and a keyword argument among its arguments. Run with that version on
PYTHONPATH."""

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


@workflow.step
def scale(x: int, *, factor: int) -> int:
    return x * factor


@workflow.step
def total(values: list[int], extra: int) -> int:
    return sum(values) + extra


node = double.step(load.step(), workflow.wait_for_event(workflow.ManualListener, key="k", name="approval"))
handle = workflow.run_async(node, workflow_id="w1")
workflow.send_event("w1", "k", 5)
with contextlib.suppress(evkit.StepFailedError):
    handle.result()
print(workflow.get_status("w1"))
print(total.step([scale.step(load.step(), factor=3), load.step()], 4).run(workflow_id="w2"))
print(evkit.sql("SELECT value FROM evkit_meta WHERE key = 'schema_version'").fetchall())
workflow.shutdown()
