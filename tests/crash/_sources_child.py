"""Child process of test_sources_exactly_once.py: runs (or resumes) one workflow that
consumes numbered messages from a Redis stream and from the HTTP inbox into a sink.

Usage: _sources_child.py DB_PATH SINK_PATH REDIS_URL STREAM TOTAL PER_ROUND

Two loops run side by side, each a chain of dynamic continuations: one waits for
PER_ROUND stream entries per round, the other for one HTTP event on each of the keys
``k0`` ... ``k<PER_ROUND - 1>`` per round (the parent posts message n to key
``k<n % PER_ROUND>``). Each round writes the events it got to the sink.

Prints ``READY <http port>`` once the run is (re)started and the inbox serves,
``PROGRESS <source> <round>`` after each round is written to the sink, and
``ACKING <entry id>`` when a stream entry is checkpointed and about to be acknowledged,
and ``DONE <rounds>`` at the end. The parent SIGKILLs it at random moments and starts it again.
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
from evkit.listeners.redis_streams import RedisStreamListener, StreamEntry

GROUP = "sink"
CONSUMER = "child"


def say(line: str) -> None:
    """One whole line on stdout, in one write: steps, listeners and main say things from
    different threads, and print() may interleave their lines (a write to a pipe of up to
    PIPE_BUF bytes is atomic)."""
    os.write(1, (line + "\n").encode())


class SlowAckListener(RedisStreamListener):
    """Acknowledges 20 ms after the checkpoint (a slow broker), so that kills often land
    between a checkpoint and its XACK: the case where a resumed run must ack the entry
    and never deliver it again."""

    polled_here: ClassVar[set[str]] = set()

    async def poll_for_event(self, url: str, stream: str, group: str, consumer: str) -> StreamEntry:  # type: ignore[override]
        entry = await super().poll_for_event(url, stream, group, consumer)
        SlowAckListener.polled_here.add(entry.entry_id)
        return entry

    async def event_checkpointed(self, event: object) -> None:
        if isinstance(event, StreamEntry):
            if event.entry_id in SlowAckListener.polled_here:
                say(f"ACKING {event.entry_id}")  # the parent may kill us now
            else:
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


def record(source: str, round_no: int, config: dict[str, str], events: tuple[object, ...]) -> None:
    if events:
        write_sink(config["sink"], workflow.get_current_step_id(), events)
        say(f"PROGRESS {source} {round_no}")


@workflow.step(name="s")
def stream_round(
    round_no: int, rounds: int, config: dict[str, str], *entries: object
) -> int | evkit.StepNode:
    """Write the previous round's entries to the sink, then wait for the next round's."""
    record("redis", round_no, config, entries)
    if round_no == rounds:
        return round_no
    waits = [
        workflow.wait_for_event(
            SlowAckListener, config["url"], config["stream"], GROUP, CONSUMER
        ).with_options(name="q")
        for _ in range(int(config["per_round"]))
    ]
    return stream_round.step(round_no + 1, rounds, config, *waits)


@workflow.step(name="h")
def http_round(round_no: int, rounds: int, config: dict[str, str], *events: object) -> int | evkit.StepNode:
    """Write the previous round's HTTP events to the sink, then wait for the next round's."""
    record("http", round_no, config, events)
    if round_no == rounds:
        return round_no
    waits = [
        workflow.wait_for_event(workflow.HTTPListener, key=f"k{i}").with_options(name="p")
        for i in range(int(config["per_round"]))
    ]
    return http_round.step(round_no + 1, rounds, config, *waits)


@workflow.step
def both(stream_rounds: int, http_rounds: int) -> int:
    assert stream_rounds == http_rounds
    return stream_rounds


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
    # The parent keeps stderr: it shows what each resume found (re-acked entries, retries).
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGUSR1, dump_state)  # the parent asks when we seem to hang
    db_path, sink_path, url, stream, total, per_round = sys.argv[1:7]
    rounds, rest = divmod(int(total), int(per_round))
    assert rest == 0, "TOTAL must be a multiple of PER_ROUND"
    config = {"sink": sink_path, "url": url, "stream": stream, "per_round": per_round}
    workflow.init(storage=db_path, loop="thread")
    # The same workflow_id resumes from the store after a kill.
    node = both.step(stream_round.step(0, rounds, config), http_round.step(0, rounds, config))
    handle = workflow.run_async(node, workflow_id="sources")
    server = workflow.serve_events()
    say(f"READY {server.port}")
    result = handle.result()
    say(f"DONE {result}")
    workflow.shutdown()


if __name__ == "__main__":
    main()
