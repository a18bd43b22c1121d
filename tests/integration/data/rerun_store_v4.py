"""Re-runs the runs of a store made by make_store_v4.py, as their user would: a fresh
``__main__`` that defines the steps as they were, ``double`` fixed. Prints what each call
returned and its plan as JSON."""

import json
import sys

from evkit import workflow

path = sys.argv[1]
workflow.init(storage=path, loop="thread")


@workflow.step
def load() -> int:
    return 21


@workflow.step(max_retries=0)
def double(x: int, event: object) -> int:
    return x * 2 + int(event)  # type: ignore[call-overload]


@workflow.step
def scale(x: int, *, factor: int) -> int:
    return x * factor


@workflow.step
def total(values: list[int], extra: int) -> int:
    return sum(values) + extra


def report(handle: workflow.RunHandle) -> dict[str, object]:
    output = handle.result()
    assert handle.plan is not None
    return {"output": output, "reused": handle.plan.reused, "rerun": dict(handle.plan.rerun)}


approval = workflow.wait_for_event(workflow.ManualListener, key="k", name="approval")
results = {
    "w1 fixed": report(workflow.run_async(double.step(load.step(), approval), workflow_id="w1")),
    # The stored DAG of w2 (its record in the old form), copied and compared with itself.
    "w2 forked": report(workflow.fork("w2", "w3", rerun=["scale"])),
    "w2 again": report(
        workflow.run_async(total.step([scale.step(load.step(), factor=3), load.step()], 4), workflow_id="w2")
    ),
    "w2 extra 5": report(
        workflow.run_async(total.step([scale.step(load.step(), factor=3), load.step()], 5), workflow_id="w2")
    ),
}
print(json.dumps(results))
workflow.shutdown()
