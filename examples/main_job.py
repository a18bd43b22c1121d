"""evkit's main job: a real event-driven workflow on the default store file.

A custom listener consumes sensor readings from a JSON-lines file queue (its offsets are
committed only after each event is checkpointed), two timers gate the report, and the
result, the run's status and a SQL query of its checkpointed events are printed.
Run it with ``scripts/run-main`` (or ``python examples/main_job.py``); the store is
``evkit.duckdb`` in the working directory unless ``EVKIT_STORAGE`` says otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import time

from evkit import workflow


class SensorListener(workflow.EventListener):
    """Waits for the first reading above ``threshold`` in a JSON-lines file.

    The offset of the last consumed line lives in ``<queue>.offset`` and is advanced only in
    ``event_checkpointed``, so a crash before the checkpoint re-reads the same line.
    """

    async def poll_for_event(self, queue: str, threshold: float) -> dict[str, object]:
        """Return the first reading above ``threshold`` after the committed offset."""
        # File reads are blocking I/O: they run in a worker thread, never on the loop.
        offset = await asyncio.to_thread(_read_offset, queue)
        while True:
            lines = await asyncio.to_thread(_read_lines, queue)
            for number, line in enumerate(lines[offset:], start=offset):
                reading = json.loads(line)
                if reading["value"] > threshold:
                    return {"queue": queue, "line": number, **reading}
            await asyncio.sleep(0.05)  # a file has no push notification; poll it cheaply

    async def event_checkpointed(self, event: dict[str, object]) -> None:
        """Advance the offset past the event's line (idempotent: it writes a value)."""
        await asyncio.to_thread(_write_offset, str(event["queue"]), int(str(event["line"])) + 1)


def _read_offset(queue: str) -> int:
    try:
        with open(queue + ".offset") as f:
            return int(f.read() or 0)
    except FileNotFoundError:
        return 0


def _write_offset(queue: str, offset: int) -> None:
    with open(queue + ".offset", "w") as f:
        f.write(str(offset))


def _read_lines(queue: str) -> list[str]:
    with open(queue) as f:
        return [line for line in f.read().splitlines() if line]


@workflow.step
def report(reading: dict[str, object], _warmup: None, _deadline: None) -> str:
    """Describe the reading; runs once the reading and both timers are in."""
    return f"sensor {reading['sensor']} read {reading['value']} (line {reading['line']})"


def produce(queue: str) -> None:
    """A stand-in for the outside world: readings arrive over about a second."""
    for i, value in enumerate([3.0, 4.5, 9.7, 2.0]):
        with open(queue, "a") as f:
            f.write(json.dumps({"sensor": f"s{i}", "value": value}) + "\n")
        threading.Event().wait(0.3)


def main() -> None:
    """Run the workflow on the default store and print what happened."""
    queue = os.path.join(tempfile.mkdtemp(prefix="evkit-demo-"), "readings.jsonl")
    open(queue, "w").close()
    runtime = workflow.init()  # evkit.duckdb in the working directory (or $EVKIT_STORAGE)
    workflow_id = f"demo-{int(time.time())}"
    node = report.step(
        workflow.wait_for_event(SensorListener, queue, 9.0),
        workflow.sleep(0.5),
        workflow.wait_for_event(workflow.TimerListener, time.time() + 1.0),
    )
    handle = workflow.run_async(node, workflow_id=workflow_id)
    print(f"store: {runtime.storage}")
    print(f"started {workflow_id}: {handle.status.value}")
    threading.Thread(target=produce, args=(queue,), daemon=True).start()
    print("result:", handle.result(timeout=60))
    print("status:", workflow.get_status(workflow_id).value)
    workflow.sql(
        "SELECT step_id, listener, state, round(epoch(committed_at) - epoch(waiting_at), 2) AS waited_s "
        "FROM events WHERE workflow_id = ? ORDER BY step_id",
        [workflow_id],
    ).show()
    workflow.shutdown()


if __name__ == "__main__":
    main()
