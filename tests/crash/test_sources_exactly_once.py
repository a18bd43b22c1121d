"""Crash proof for the real sources: 1,000 stream entries and 1,000 HTTP events, consumed by
a workflow whose process is SIGKILLed at random moments at least 20 times and resumed each
time. Every message must reach the sink exactly once, and every stream entry be acked."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import duckdb
import pytest
from _redis import SKIP_REASON, RedisServer, redis_available

from evkit.listeners.redis_streams import make_client

CHILD = Path(__file__).with_name("_sources_child.py")
TOTAL = 1_000
PER_ROUND = 10  # stream entries and HTTP events per round: 100 rounds
BURST = PER_ROUND // 2  # stream entries produced at a time
KILLS = 20
STREAM = "numbers"
GROUP, CONSUMER = "sink", "child"  # as in _sources_child.py
LINE_TIMEOUT_SECONDS = 30.0

pytestmark = [
    pytest.mark.crash,
    pytest.mark.slow,
    pytest.mark.redis,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not redis_available(), reason=SKIP_REASON),
]


class Child:
    """The workflow process: started, read line by line, killed, started again."""

    def __init__(self, args: list[str], stderr_path: Path) -> None:
        self.args = args
        self.stderr_path = stderr_path
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.describe_broker: Callable[[], Awaitable[str]] | None = None

    async def start(self) -> None:
        self.starts += 1
        with self.stderr_path.open("ab") as stderr:
            stderr.write(f"\n--- start {self.starts} ---\n".encode())
            stderr.flush()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-u", str(CHILD), *self.args, stdout=asyncio.subprocess.PIPE, stderr=stderr
            )

    async def line(self) -> str:
        """The child's next stdout line; fails with its stderr if it died unexpectedly."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(LINE_TIMEOUT_SECONDS):
                raw = await self.proc.stdout.readline()
        except TimeoutError:
            self.proc.send_signal(signal.SIGUSR1)  # the child dumps its stacks and tasks
            broker = await self.describe_broker() if self.describe_broker else ""
            await asyncio.sleep(1)
            raise AssertionError(
                f"child printed nothing for {LINE_TIMEOUT_SECONDS} s (start {self.starts}): a lost "
                f"message leaves the run waiting forever. Broker: {broker}. stderr tail:\n"
                + self.stderr_path.read_text(errors="replace")[-6000:]
            ) from None
        if not raw:
            await self.proc.wait()
            raise AssertionError(
                f"child exited with {self.proc.returncode} (start {self.starts}); stderr tail:\n"
                + self.stderr_path.read_text(errors="replace")[-4000:]
            )
        return raw.decode().strip()

    async def exit_code(self) -> int:
        """Wait for the child to exit on its own (after DONE it closes its runtime)."""
        assert self.proc is not None
        try:
            async with asyncio.timeout(LINE_TIMEOUT_SECONDS):
                return await self.proc.wait()
        except TimeoutError:
            self.proc.send_signal(signal.SIGUSR1)
            await asyncio.sleep(1)
            raise AssertionError(
                f"child did not exit within {LINE_TIMEOUT_SECONDS} s after DONE. stderr tail:\n"
                + self.stderr_path.read_text(errors="replace")[-6000:]
            ) from None

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no cleanup of any kind runs in the child
        await self.proc.wait()  # DuckDB lets one process hold the file: wait for the exit


class Inbox:
    """Where the child's HTTP server is right now (None while it is down)."""

    def __init__(self) -> None:
        self.port: int | None = None
        self.generation = 0
        self.changed = asyncio.Condition()

    async def up(self, port: int) -> None:
        async with self.changed:
            self.port, self.generation = port, self.generation + 1
            self.changed.notify_all()

    async def down(self) -> None:
        async with self.changed:
            self.port = None

    async def wait_up(self, newer_than: int) -> tuple[int, int]:
        async with self.changed:
            await self.changed.wait_for(lambda: self.port is not None and self.generation > newer_than)
            assert self.port is not None
            return self.port, self.generation


async def test_every_stream_and_http_message_is_processed_exactly_once_across_20_kills(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("EVKIT_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    started = time.monotonic()
    db_path, sink_path = tmp_path / "evkit.duckdb", tmp_path / "sink.sqlite"
    with sqlite3.connect(sink_path) as con:
        con.execute(
            "CREATE TABLE deliveries (slot TEXT PRIMARY KEY, source TEXT, number INTEGER, entry_id TEXT)"
        )

    with RedisServer() as redis_server:
        redis = make_client(redis_server.url)
        child = Child(
            [str(db_path), str(sink_path), redis_server.url, STREAM, str(TOTAL), str(PER_ROUND)],
            tmp_path / "child.stderr",
        )
        inbox = Inbox()

        async def describe_broker() -> str:
            pending = await redis.xpending_range(STREAM, GROUP, min="-", max="+", count=20)
            return f"groups={await redis.xinfo_groups(STREAM)} pending={pending}"

        child.describe_broker = describe_broker
        stats = {"http_retries": 0, "http_duplicate_replies": 0}

        async def produce_stream() -> None:
            # Half a round at a time, once the group has read and acked everything before.
            # A round's first half is then checkpointed (and being acked) while its other
            # waits still read: a kill at ACKING leaves entries checkpointed but not acked,
            # which the resumed run must ack and never hand to those other waits.
            for start in range(0, TOTAL, BURST):
                while start:
                    groups = await redis.xinfo_groups(STREAM)  # [] until the child made the group
                    if groups and groups[0]["lag"] == 0 and groups[0]["pending"] == 0:
                        break
                    await asyncio.sleep(0.002)  # polling the group: Redis has no signal for it
                async with redis.pipeline(transaction=False) as pipe:
                    for n in range(start, min(start + BURST, TOTAL)):
                        pipe.xadd(STREAM, {"n": str(n)})
                    await pipe.execute()

        async def post(session: aiohttp.ClientSession, n: int) -> None:
            failed_generation = 0
            while True:
                port, generation = await inbox.wait_up(failed_generation)
                url = f"http://127.0.0.1:{port}/events/sources/k{n % PER_ROUND}"
                try:
                    async with session.post(
                        url,
                        json={"n": n},
                        headers={"Idempotency-Key": f"m{n}"},
                        timeout=aiohttp.ClientTimeout(total=30),
                    ) as reply:
                        body = await reply.json()
                        assert reply.status == 202, (reply.status, body)
                        stats["http_duplicate_replies"] += bool(body["duplicate"])
                        return
                except (aiohttp.ClientConnectionError, TimeoutError):
                    # Killed mid-request (stored or not: the retry with the same key decides).
                    stats["http_retries"] += 1
                    failed_generation = generation

        async def produce_http() -> None:
            limit = asyncio.Semaphore(16)

            async def one(n: int) -> None:
                async with limit:
                    await post(session, n)

            async with aiohttp.ClientSession() as session:
                await asyncio.gather(*(one(n) for n in range(TOTAL)))

        producers = [asyncio.create_task(produce_stream()), asyncio.create_task(produce_http())]
        kills, result = 0, None
        kills_by_mode = {"progress": 0, "acking": 0}
        try:
            while result is None:
                for task in producers:  # a producer's failure must not look like a hang
                    if task.done() and task.exception() is not None:
                        raise AssertionError("a producer failed") from task.exception()
                await child.start()
                # A resumed run may finish a round (and say PROGRESS) before READY.
                while not (ready := await child.line()).startswith("READY "):
                    assert ready.startswith(("PROGRESS ", "ACKING ", "DONE ")), ready
                await inbox.up(int(ready.split()[1]))
                if kills >= KILLS:
                    while not (line := await child.line()).startswith("DONE"):
                        assert line.startswith(("PROGRESS ", "ACKING ")), line
                    result = line
                    break
                # A random moment: right after the (re)start, or a few rounds later plus a
                # random slice of the next round; or (a named crash point) right after a
                # stream entry is checkpointed, before its XACK.
                mode = rng.choice(["progress", "progress", "acking"])
                kills_by_mode[mode] += 1
                rounds_to_wait = rng.choice([0, 1, 2, 3]) if mode == "progress" else 0
                while result is None and (mode == "acking" or rounds_to_wait > 0):
                    line = await child.line()
                    if line.startswith("DONE"):
                        result = line
                    elif line.startswith("ACKING") and mode == "acking":
                        break
                    elif line.startswith("PROGRESS"):
                        rounds_to_wait -= 1
                if result is None:
                    if mode == "progress":
                        await asyncio.sleep(rng.uniform(0, 0.05))
                    await inbox.down()
                    await child.kill()
                    kills += 1
            assert await child.exit_code() == 0
            await asyncio.wait_for(asyncio.gather(*producers), timeout=30)
        finally:
            for task in producers:
                task.cancel()
            await asyncio.gather(*producers, return_exceptions=True)
            if child.proc is not None and child.proc.returncode is None:
                await child.kill()

        pending = await redis.xpending(STREAM, GROUP)
        (group_info,) = await redis.xinfo_groups(STREAM)
        await redis.aclose()

    context = f"seed={seed} kills={kills} {kills_by_mode} starts={child.starts} stats={stats}"
    assert kills >= KILLS, context
    assert result == f"DONE {TOTAL // PER_ROUND}", context

    # The sink: one row per delivery; every message exactly once from each source.
    with sqlite3.connect(sink_path) as con:
        counts = con.execute(
            "SELECT source, number, count(*) FROM deliveries GROUP BY source, number"
        ).fetchall()
        total_rows = con.execute("SELECT count(*) FROM deliveries").fetchone()
    delivered = {(source, number): count for source, number, count in counts}
    expected = {(source, n): 1 for source in ("redis", "http") for n in range(TOTAL)}
    duplicates = {k: v for k, v in delivered.items() if v != 1}
    missing = sorted(set(expected) - set(delivered))
    assert not duplicates, f"delivered more than once: {sorted(duplicates)[:10]} ({context})"
    assert not missing, f"never delivered: {missing[:10]} (+{max(0, len(missing) - 10)}) ({context})"
    assert total_rows == (2 * TOTAL,), context

    # The broker: nothing pending, everything read.
    assert pending["pending"] == 0, f"{pending} ({context})"
    assert (group_info["lag"], group_info["pending"]) == (0, 0), f"{group_info} ({context})"

    # The store agrees: 2,000 committed events, each source id once; the inbox kept each
    # HTTP message once although retries re-sent some.
    with duckdb.connect(str(db_path), read_only=True) as con:
        events = con.execute(
            """
            SELECT count(*), count(DISTINCT source_id), count(*) FILTER (WHERE state = 'committed')
            FROM events WHERE workflow_id = 'sources' AND checkpointed_at IS NOT NULL
            """
        ).fetchone()
        inbox_rows = con.execute(
            "SELECT count(*), count(DISTINCT event_id), count(delivered_to) FROM inbox_events"
        ).fetchone()
        status = con.execute("SELECT status FROM workflows WHERE workflow_id = 'sources'").fetchone()
    assert events == (2 * TOTAL, 2 * TOTAL, 2 * TOTAL), context
    assert inbox_rows == (TOTAL, TOTAL, TOTAL), context
    assert status == ("SUCCESSFUL",), context
    print(f"\nsources crash proof: {context}, {time.monotonic() - started:.1f} s")
