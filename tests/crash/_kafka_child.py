"""Child process of test_kafka_exactly_once.py: runs (or resumes) one workflow that consumes
numbered messages from a Kafka topic into a sink.

Usage: _kafka_child.py DB_PATH SINK_PATH BOOTSTRAP TOPIC TOTAL PER_ROUND

The workflow is a chain of dynamic continuations that waits for PER_ROUND messages per
round (PER_ROUND parallel KafkaListener waits) and writes them to the sink.

Prints ``READY`` once the run is (re)started, ``PROGRESS <round>`` after each round is
written to the sink, ``COMMITTING <source id>`` when a message is checkpointed and its
offset is about to be committed, and ``DONE <rounds>`` at the end. The parent SIGKILLs it
at random moments and starts it again.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import sqlite3
import sys
from typing import ClassVar

import evkit
from evkit import workflow
from evkit.listeners.kafka import KafkaListener, KafkaMessage

GROUP = "sink"
# Group joins take about session.timeout.ms / 2 on tansu; a killed member leaves the group
# when its session times out. tansu answers a fetch only after fetch.wait.max.ms.
CONFIG = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500, "fetch.wait.max.ms": 50}


def say(line: str) -> None:
    """One whole line on stdout, in one write (steps and listeners run on several threads)."""
    os.write(1, (line + "\n").encode())


class SlowCommitListener(KafkaListener):
    """Commits 20 ms after the checkpoint (a slow broker), so that kills often land between
    a checkpoint and its commit: the case where a resumed run must commit the message and
    never deliver it again."""

    polled_here: ClassVar[set[str]] = set()

    async def poll_for_event(self, topic: str, **kwargs: object) -> KafkaMessage:  # type: ignore[override]
        message = await super().poll_for_event(topic, **kwargs)  # type: ignore[arg-type]
        SlowCommitListener.polled_here.add(message.source_id)
        return message

    async def event_checkpointed(self, event: object) -> None:
        if isinstance(event, KafkaMessage):
            if event.source_id in SlowCommitListener.polled_here:
                say(f"COMMITTING {event.source_id}")  # the parent may kill us now
            else:
                logging.getLogger("child").info("commit again after a restart: %s", event.source_id)
        await asyncio.sleep(0.02)
        await super().event_checkpointed(event)


def write_sink(sink_path: str, slot_prefix: str, events: tuple[object, ...]) -> None:
    """Record each delivered message in the sink, keyed by the delivering step and position.

    Re-running this step after a crash rewrites its own rows; a message delivered twice (to
    two event steps) would show up as two rows.
    """
    rows = []
    for position, event in enumerate(events):
        assert isinstance(event, KafkaMessage), event
        rows.append((f"{slot_prefix}#{position}", int(event.text), event.partition, event.offset))
    with sqlite3.connect(sink_path, timeout=30) as con:
        con.executemany("INSERT OR REPLACE INTO deliveries VALUES (?, ?, ?, ?)", rows)


@workflow.step(name="k")
def kafka_round(
    round_no: int, rounds: int, config: dict[str, str], *messages: object
) -> int | evkit.StepNode:
    """Write the previous round's messages to the sink, then wait for the next round's."""
    if messages:
        write_sink(config["sink"], workflow.get_current_step_id(), messages)
        say(f"PROGRESS {round_no}")
    if round_no == rounds:
        return round_no
    waits = [
        workflow.wait_for_event(
            SlowCommitListener,
            config["topic"],
            group=GROUP,
            bootstrap_servers=config["bootstrap"],
            config=CONFIG,
        ).with_options(name="m")
        for _ in range(int(config["per_round"]))
    ]
    return kafka_round.step(round_no + 1, rounds, config, *waits)


def dump_state(signum: int, frame: object) -> None:
    """Write every thread's stack and every task of the engine's loop to stderr."""
    faulthandler.dump_traceback(all_threads=True)
    loop = workflow.get_runtime().engine().loop

    def tasks() -> None:
        for task in asyncio.all_tasks(loop):
            task.print_stack(limit=12, file=sys.stderr)
        sys.stderr.flush()

    loop.call_soon_threadsafe(tasks)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGUSR1, dump_state)  # the parent asks when we seem to hang
    db_path, sink_path, bootstrap, topic, total, per_round = sys.argv[1:7]
    rounds, rest = divmod(int(total), int(per_round))
    assert rest == 0, "TOTAL must be a multiple of PER_ROUND"
    config = {"sink": sink_path, "bootstrap": bootstrap, "topic": topic, "per_round": per_round}
    workflow.init(storage=db_path, loop="thread")
    # The same workflow_id resumes from the store after a kill.
    handle = workflow.run_async(kafka_round.step(0, rounds, config), workflow_id="kafka")
    say("READY")
    result = handle.result()
    say(f"DONE {result}")
    workflow.shutdown()


if __name__ == "__main__":
    main()
