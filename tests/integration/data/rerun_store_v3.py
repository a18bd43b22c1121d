"""Re-runs run 'w1' of a store made by make_store_v3.py, as its user would: a fresh
``__main__`` that defines ``load`` as it was and ``double`` fixed. Prints the output and
the plan as JSON."""

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


node = double.step(load.step(), workflow.wait_for_event(workflow.ManualListener, key="k", name="approval"))
handle = workflow.run_async(node, workflow_id="w1")
output = handle.result()
assert handle.plan is not None
print(json.dumps({"output": output, "reused": handle.plan.reused, "rerun": dict(handle.plan.rerun)}))
workflow.shutdown()
