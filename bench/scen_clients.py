"""Scenario 12: one store, many processes -- what a client of the store's owner pays.

An owner process (``python -m bench.scen_clients owner ...``) holds a store with a run
waiting on K manual events (each feeding a step that notes when it starts) and N inbox
events of another run. Measured beside the in-process figure:

- a cold ``evkit list`` (a fresh process, import to exit) against the live owner, beside
  the same command reading the store file itself once no process owns it;
- a query returning N event rows (``SELECT * FROM inbox_events``), ``.fetchall()`` in a
  client process through the endpoint (Arrow IPC), beside the same call in the owner;
- ``send_event`` from a client process to the downstream step's start (p50), beside
  ``send_event`` in the owner's own process: batches of each, interleaved on one run
  (client, owner, client, owner), so the machine's load hits both alike.

Clocks: ``time.perf_counter`` is CLOCK_MONOTONIC on Linux, one clock for every process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from bench.common import percentile

STARTED: dict[int, float] = {}


def note_start(i: int) -> int:
    STARTED[i] = time.perf_counter()
    return i


def owner(path: str, n: int, k: int) -> None:
    """Hold the store and answer commands on stdin until it closes (one JSON line each)."""
    from evkit import workflow

    workflow.init(storage=path, loop="thread")
    step = workflow.step(note_start)

    @workflow.step
    def done(*values: int) -> int:
        return len(values)

    waits = [step.step(workflow.wait_for_event(workflow.ManualListener, f"k{i}")) for i in range(k)]
    handle = workflow.run_async(done.step(*waits), workflow_id="latency")
    bulk = workflow.run_async(workflow.wait_for_event(workflow.ManualListener, "never"), workflow_id="bulk")
    for start in range(0, n, 100_000):
        workflow.send_events("bulk", [("bulk", i) for i in range(start, min(n, start + 100_000))])
    import asyncio

    asyncio.run(handle.wait_waiting(timeout_seconds=120))
    asyncio.run(workflow.get_runtime().serving_async())
    print("READY", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "sql":
            t0 = time.perf_counter()
            rows = workflow.sql(QUERY).fetchall()
            fetchall = time.perf_counter() - t0
            t0 = time.perf_counter()
            workflow.sql(QUERY).to_arrow_table()
            arrow = time.perf_counter() - t0
            print(json.dumps({"rows": len(rows), "fetchall_s": fetchall, "arrow_s": arrow}), flush=True)
        elif command.startswith("local "):
            first, last = map(int, command.split()[1:])
            sent = {}
            for i in range(first, last):
                sent[i] = time.perf_counter()
                workflow.send_event("latency", f"k{i}", i)
                time.sleep(0.025)  # as the client does
            print(json.dumps(sent), flush=True)
        elif command == "started":
            handle.result(timeout=120)
            print(json.dumps({str(i): t for i, t in STARTED.items()}), flush=True)
    bulk.cancel()
    workflow.shutdown()


QUERY = "SELECT * FROM inbox_events"


def client_sql(path: str) -> None:
    from evkit import workflow

    workflow.init(storage=path)
    workflow.sql("SELECT 1").fetchall()  # the connection, and pyarrow's import, paid once
    t0 = time.perf_counter()
    rows = workflow.sql(QUERY).fetchall()
    fetchall = time.perf_counter() - t0
    t0 = time.perf_counter()
    workflow.sql(QUERY).to_arrow_table()
    arrow = time.perf_counter() - t0
    print(json.dumps({"rows": len(rows), "fetchall_s": fetchall, "arrow_s": arrow}), flush=True)
    workflow.shutdown()


def client_send(path: str, first: int, last: int, pause: float) -> None:
    from evkit import workflow

    workflow.init(storage=path)
    workflow.get_status("latency")  # the connection is made before the first send
    sent = {}
    for i in range(first, last):
        sent[i] = time.perf_counter()
        workflow.send_event("latency", f"k{i}", i)
        time.sleep(pause)  # let the event reach its step before the next one is sent
    print(json.dumps(sent), flush=True)
    workflow.shutdown()


def _python(*args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def _cold_list(path: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "evkit.cli", "list", "--storage", path],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    return time.perf_counter() - start


def _cold_import() -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import evkit.cli"],
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    return time.perf_counter() - start


def measure(path: str, n: int, k: int, repeats: int) -> dict[str, object]:
    """Every figure of the scenario, with the owner at ``path`` (a fresh store)."""
    holder = _python("-m", "bench.scen_clients", "owner", path, str(n), str(k), stdin=subprocess.PIPE)
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline() == "READY\n", "the owner did not start"
        owned_list, import_floor = [], []
        for _ in range(repeats):  # interleaved: the machine's load hits both alike
            owned_list.append(_cold_list(path))
            import_floor.append(_cold_import())
        holder.stdin.write("sql\n")
        holder.stdin.flush()
        in_process = json.loads(holder.stdout.readline())
        client = _python("-m", "bench.scen_clients", "client-sql", path)
        through, _ = client.communicate(timeout=600)
        endpoint = json.loads(through)
        remote: dict[int, float] = {}
        local: dict[int, float] = {}
        quarter = k // 4
        for batch in range(4):
            first, last = batch * quarter, (batch + 1) * quarter
            if batch % 2 == 0:
                client = _python(
                    "-m", "bench.scen_clients", "client-send", path, str(first), str(last), "0.025"
                )
                out, _ = client.communicate(timeout=600)
                remote.update({int(i): t for i, t in json.loads(out).items()})
            else:
                holder.stdin.write(f"local {first} {last}\n")
                holder.stdin.flush()
                local.update({int(i): t for i, t in json.loads(holder.stdout.readline()).items()})
        holder.stdin.write("started\n")
        holder.stdin.flush()
        started = {int(i): t for i, t in json.loads(holder.stdout.readline()).items()}
        holder.stdin.close()
        holder.wait(timeout=120)
    finally:
        if holder.poll() is None:
            holder.kill()
    free_list = [_cold_list(path) for _ in range(repeats)]
    remote_ms = [(started[i] - sent) * 1000 for i, sent in remote.items()]
    local_ms = [(started[i] - sent) * 1000 for i, sent in local.items()]
    return {
        "cold_list_owner_s": owned_list,
        "cold_list_file_s": free_list,
        "sql_in_process": in_process,
        "sql_endpoint": endpoint,
        "send_p50_ms": percentile(remote_ms, 50),
        "send_p99_ms": percentile(remote_ms, 99),
        "send_in_process_p50_ms": percentile(local_ms, 50),
        "send_in_process_p99_ms": percentile(local_ms, 99),
        "cold_import_s": import_floor,
        "cold_list_owner_median_s": statistics.median(owned_list),
        "cold_import_median_s": statistics.median(import_floor),
        "cold_list_file_median_s": statistics.median(free_list),
    }


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "owner":
        owner(rest[0], int(rest[1]), int(rest[2]))
    elif command == "client-sql":
        client_sql(rest[0])
    elif command == "client-send":
        client_send(rest[0], int(rest[1]), int(rest[2]), float(rest[3]))
    else:
        raise SystemExit(f"unknown command {command!r}")
