"""Child process of test_sources_exactly_once.py: runs (or resumes) one workflow that
consumes numbered messages from a Redis stream and from the HTTP inbox into a sink.

Usage: _sources_child.py DB_PATH SINK_PATH REDIS_URL STREAM TOTAL PER_ROUND

Each round waits for PER_ROUND stream entries and for one HTTP event on each of the keys
``k0`` ... ``k<PER_ROUND - 1>`` (the parent posts message n to key ``k<n % PER_ROUND>``).

Prints ``READY <http port>`` once the run is (re)started and the inbox serves, then
``PROGRESS <round>`` after each round is written to the sink, and ``DONE <n>`` at the end.
The parent SIGKILLs it at random moments and starts it again.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys

import evkit
from evkit import workflow
from evkit.listeners.redis_streams import RedisStreamListener, StreamEntry

GROUP = "sink"
CONSUMER = "child"


class SlowAckListener(RedisStreamListener):
    """Acknowledges 20 ms after the checkpoint (a slow broker), so that kills often land
    between a checkpoint and its XACK: the case where a resumed run must ack the entry
    and never deliver it again."""

    polled_here: set[str] = set()

    async def poll_for_event(self, url: str, stream: str, group: str, consumer: str) -> StreamEntry:  # type: ignore[override]
        entry = await super().poll_for_event(url, stream, group, consumer)
        SlowAckListener.polled_here.add(entry.entry_id)
        return entry

    async def event_checkpointed(self, event: object) -> None:
        if isinstance(event, StreamEntry) and event.entry_id not in SlowAckListener.polled_here:
            logging.getLogger("child").info("commit again after a restart: entry %s", event.entry_id)
        await asyncio.sleep(0.02)
        await super().event_checkpointed(event)


def write_sink(sink_path: str, slot_prefix: str, events: tuple[object, ...]) -> None:
    """Record each delivered event in the sink, keyed by the delivering step and position.

    The key is where the event was delivered (this step's id and the argument position),
    never the message number: re-running this step after a crash rewrites its own rows,
    but a message delivered twice (to two event steps) would show up as two rows.
    """
    rows = []
    for position, event in enumerate(events):
        if isinstance(event, StreamEntry):
            rows.append((f"{slot_prefix}#{position}", "redis", int(event.fields["n"]), event.entry_id))
        else:
            assert isinstance(event, dict), event
            rows.append((f"{slot_prefix}#{position}", "http", int(event["n"]), None))
    with sqlite3.connect(sink_path, timeout=30) as con:
        con.executemany("INSERT OR REPLACE INTO deliveries VALUES (?, ?, ?, ?)", rows)


@workflow.step(name="r")
def consume_round(
    round_no: int, rounds: int, config: dict[str, str], *events: object
) -> int | evkit.StepNode:
    """Write the previous round's events to the sink, then wait for the next round's."""
    if events:
        write_sink(str(config["sink"]), workflow.get_current_step_id(), events)
        print(f"PROGRESS {round_no}", flush=True)
    if round_no == rounds:
        return round_no
    per_round = int(config["per_round"])
    redis_waits = [
        workflow.wait_for_event(
            SlowAckListener, config["url"], config["stream"], GROUP, CONSUMER
        ).with_options(name="q")
        for _ in range(per_round)
    ]
    http_waits = [
        workflow.wait_for_event(workflow.HTTPListener, key=f"k{i}").with_options(name="h")
        for i in range(per_round)
    ]
    return consume_round.step(round_no + 1, rounds, config, *redis_waits, *http_waits)


def main() -> None:
    # The parent keeps stderr: it shows what each resume found (re-acked entries, retries).
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    db_path, sink_path, url, stream, total, per_round = sys.argv[1:7]
    rounds, rest = divmod(int(total), int(per_round))
    assert rest == 0, "TOTAL must be a multiple of PER_ROUND"
    config = {"sink": sink_path, "url": url, "stream": stream, "per_round": per_round}
    workflow.init(storage=db_path, loop="thread")
    # The same workflow_id resumes from the store after a kill.
    handle = workflow.run_async(consume_round.step(0, rounds, config), workflow_id="sources")
    server = workflow.serve_events()
    print(f"READY {server.port}", flush=True)
    result = handle.result()
    print(f"DONE {result}", flush=True)
    workflow.shutdown()


if __name__ == "__main__":
    main()
