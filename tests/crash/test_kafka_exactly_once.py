"""Crash proof for KafkaListener: 1,000 messages on 3 partitions, consumed by a workflow
whose process is SIGKILLed at random moments at least 20 times and resumed each time.
Every message must reach the sink exactly once, and the group's committed offsets must
end at the topic's end offsets."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path

import duckdb
import pytest
from _kafka import SKIP_REASON, KafkaBroker, kafka_available

CHILD = Path(__file__).with_name("_kafka_child.py")
TOTAL = 1_000
PER_ROUND = 10  # messages per round: 100 rounds
PARTITIONS = 3
KILLS = 20
TOPIC, GROUP = "numbers", "sink"  # GROUP as in _kafka_child.py
LINE_TIMEOUT_SECONDS = 30.0

pytestmark = [
    pytest.mark.crash,
    pytest.mark.slow,
    pytest.mark.kafka,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not kafka_available(), reason=SKIP_REASON),
]


class Child:
    """The workflow process: started, read line by line, killed, started again."""

    def __init__(self, args: list[str], stderr_path: Path) -> None:
        self.args = args
        self.stderr_path = stderr_path
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.progress = 0  # the highest round the sink has
        self.progressed = asyncio.Event()

    async def start(self) -> None:
        self.starts += 1
        with self.stderr_path.open("ab") as stderr:
            stderr.write(f"\n--- start {self.starts} ---\n".encode())
            stderr.flush()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-u", str(CHILD), *self.args, stdout=asyncio.subprocess.PIPE, stderr=stderr
            )

    async def line(self) -> str:
        """The child's next stdout line; fails with its stderr if it died or hangs."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(LINE_TIMEOUT_SECONDS):
                raw = await self.proc.stdout.readline()
        except TimeoutError:
            self.proc.send_signal(signal.SIGUSR1)  # the child dumps its stacks and tasks
            await asyncio.sleep(1)
            raise AssertionError(
                f"child printed nothing for {LINE_TIMEOUT_SECONDS} s (start {self.starts}): a lost "
                "message leaves the run waiting forever. stderr tail:\n"
                + self.stderr_path.read_text(errors="replace")[-6000:]
            ) from None
        if not raw:
            await self.proc.wait()
            raise AssertionError(
                f"child exited with {self.proc.returncode} (start {self.starts}); stderr tail:\n"
                + self.stderr_path.read_text(errors="replace")[-4000:]
            )
        line = raw.decode().strip()
        if line.startswith("PROGRESS "):
            self.progress = max(self.progress, int(line.split()[1]))
            self.progressed.set()
        return line

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no cleanup of any kind runs in the child
        await self.proc.wait()  # DuckDB lets one process hold the file: wait for the exit


def committed_offsets(bootstrap: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    try:
        tps = consumer.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


async def test_every_kafka_message_is_processed_exactly_once_across_20_kills(tmp_path: Path) -> None:
    seed = int(os.environ.get("EVKIT_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    started = time.monotonic()
    db_path, sink_path = tmp_path / "evkit.duckdb", tmp_path / "sink.sqlite"
    with sqlite3.connect(sink_path) as con:
        con.execute(
            "CREATE TABLE deliveries "
            "(slot TEXT PRIMARY KEY, number INTEGER, partition INTEGER, offset INTEGER)"
        )

    with KafkaBroker() as broker:
        await asyncio.to_thread(broker.create_topic, TOPIC, partitions=PARTITIONS)
        child = Child(
            [str(db_path), str(sink_path), broker.bootstrap_servers, TOPIC, str(TOTAL), str(PER_ROUND)],
            tmp_path / "child.stderr",
        )
        reports: list[tuple[int, int]] = []
        produced = asyncio.Event()

        async def produce() -> None:
            # A round's messages at a time, at most two rounds ahead of the sink, so the run
            # lasts long enough for 20 kills. One message per request: tansu's high watermark
            # is wrong after a batch, so the end offsets come from the delivery reports.
            for start in range(0, TOTAL, PER_ROUND):
                while start // PER_ROUND > child.progress + 2:
                    child.progressed.clear()
                    await child.progressed.wait()
                batch = range(start, start + PER_ROUND)
                for n in batch:
                    reports.extend(
                        await asyncio.to_thread(
                            broker.produce, TOPIC, [str(n).encode()], partition=n % PARTITIONS
                        )
                    )
            produced.set()

        producer = asyncio.create_task(produce())
        kills, result = 0, None
        kills_by_mode = {"progress": 0, "committing": 0}
        try:
            while result is None:
                if producer.done() and producer.exception() is not None:
                    raise AssertionError("the producer failed") from producer.exception()
                await child.start()
                while (ready := await child.line()) != "READY":
                    assert ready.startswith(("PROGRESS ", "COMMITTING ", "DONE ")), ready
                if kills >= KILLS:
                    while not (line := await child.line()).startswith("DONE"):
                        assert line.startswith(("PROGRESS ", "COMMITTING ")), line
                    result = line
                    break
                mode = rng.choice(["progress", "progress", "committing"])
                kills_by_mode[mode] += 1
                rounds_to_wait = rng.choice([0, 1, 2]) if mode == "progress" else 0
                while result is None and (mode == "committing" or rounds_to_wait > 0):
                    line = await child.line()
                    if line.startswith("DONE"):
                        result = line
                    elif line.startswith("COMMITTING") and mode == "committing":
                        break
                    elif line.startswith("PROGRESS"):
                        rounds_to_wait -= 1
                if result is None:
                    if mode == "progress":
                        await asyncio.sleep(rng.uniform(0, 0.05))
                    await child.kill()
                    kills += 1
            assert child.proc is not None
            assert await asyncio.wait_for(child.proc.wait(), LINE_TIMEOUT_SECONDS) == 0
            await asyncio.wait_for(produced.wait(), timeout=30)
        finally:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
            if child.proc is not None and child.proc.returncode is None:
                await child.kill()

        committed = await asyncio.to_thread(committed_offsets, broker.bootstrap_servers)

    context = f"seed={seed} kills={kills} {kills_by_mode} starts={child.starts}"
    assert kills >= KILLS, context
    assert result == f"DONE {TOTAL // PER_ROUND}", context

    # The sink: every number exactly once, each from the partition and offset it was produced at.
    with sqlite3.connect(sink_path) as con:
        rows = con.execute("SELECT number, partition, offset FROM deliveries").fetchall()
    numbers = sorted(number for number, _, _ in rows)
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    missing = sorted(set(range(TOTAL)) - set(numbers))
    assert not duplicates, f"delivered more than once: {duplicates[:10]} ({context})"
    assert not missing, f"never delivered: {missing[:10]} (+{max(0, len(missing) - 10)}) ({context})"
    assert len(rows) == TOTAL, context
    assert {(p, o) for _, p, o in rows} == set(reports), context

    # The broker: each partition's committed offset is its end offset.
    end_offsets = {p: max(o for q, o in reports if q == p) + 1 for p in range(PARTITIONS)}
    assert committed == end_offsets, context

    # The store agrees: 1,000 committed events, each source id once.
    with duckdb.connect(str(db_path), read_only=True) as con:
        events = con.execute(
            """
            SELECT count(*), count(DISTINCT source_id), count(*) FILTER (WHERE state = 'committed')
            FROM events WHERE workflow_id = 'kafka' AND checkpointed_at IS NOT NULL
            """
        ).fetchone()
        status = con.execute("SELECT status FROM workflows WHERE workflow_id = 'kafka'").fetchone()
    assert events == (TOTAL, TOTAL, TOTAL), context
    assert status == ("SUCCESSFUL",), context
    print(f"\nkafka crash proof: {context}, {time.monotonic() - started:.1f} s")
