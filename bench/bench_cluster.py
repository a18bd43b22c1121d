"""Cluster scenario: a CPU-heavy fan-out on the local pool versus a 2-worker Dask cluster.

Each step counts primes in a range with plain Python, so threads in the kernel share one
core (the GIL) while worker processes use both. The plain loop (no evkit) is the floor.
Standalone: ``python -m bench.bench_cluster [--quick] [--ray]``; ``run(quick)`` returns
the rows for a shared runner.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time


def count_primes(start: int, stop: int) -> int:
    return sum(1 for n in range(max(start, 2), stop) if all(n % d for d in range(2, int(n**0.5) + 1)))


def _sizes(quick: bool) -> tuple[int, int]:
    """(steps, numbers per step): about 1 s of CPU per 4 steps at full size on one core."""
    return (8, 20_000) if quick else (16, 60_000)


def _plain(steps: int, width: int) -> tuple[float, int]:
    start = time.perf_counter()
    total = sum(count_primes(i * width, (i + 1) * width) for i in range(steps))
    return time.perf_counter() - start, total


def _evkit(executor: object, steps: int, width: int, label: str) -> tuple[float, int]:
    from evkit import workflow

    directory = tempfile.mkdtemp(prefix="evkit-bench-")
    try:
        workflow.init(storage=os.path.join(directory, "bench.duckdb"), loop="thread", executor=executor)
        chunk = workflow.step(count_primes)
        add_up = workflow.step(lambda *counts: sum(counts))
        add_up.step(chunk.step(0, 10)).run(workflow_id="warmup")  # imports on the workers
        start = time.perf_counter()
        total = add_up.step(*[chunk.step(i * width, (i + 1) * width) for i in range(steps)]).run(
            workflow_id=label
        )
        elapsed = time.perf_counter() - start
        workflow.shutdown()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert isinstance(total, int)
    return elapsed, total


def run(quick: bool, *, with_ray: bool = False) -> list[dict[str, object]]:
    """Run the scenario; one row per executor (seconds for the fan-out, startup excluded)."""
    steps, width = _sizes(quick)
    rows: list[dict[str, object]] = []
    floor, expected = _plain(steps, width)
    rows.append(
        {"scenario": "cpu_fanout", "executor": "plain loop (no evkit)", "steps": steps, "seconds": floor}
    )
    seconds, total = _evkit("local", steps, width, "local")
    assert total == expected
    rows.append(
        {"scenario": "cpu_fanout", "executor": "local pool (threads)", "steps": steps, "seconds": seconds}
    )

    from distributed import Client, LocalCluster

    started = time.perf_counter()
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"allowed_failures": 0},
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        startup = time.perf_counter() - started
        seconds, total = _evkit(client, steps, width, "dask")
    assert total == expected
    rows.append(
        {
            "scenario": "cpu_fanout",
            "executor": "dask, 2 workers",
            "steps": steps,
            "seconds": seconds,
            "startup_s": startup,
        }
    )

    if with_ray:
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        startup = time.perf_counter() - started
        try:
            seconds, total = _evkit("ray", steps, width, "ray")
        finally:
            ray.shutdown()
        assert total == expected
        rows.append(
            {
                "scenario": "cpu_fanout",
                "executor": "ray, 2 CPUs",
                "steps": steps,
                "seconds": seconds,
                "startup_s": startup,
            }
        )
    for row in rows:
        row["speedup_vs_local"] = rows[1]["seconds"] / row["seconds"]  # type: ignore[operator]
    return rows


def _table(rows: list[dict[str, object]]) -> str:
    lines = [f"{'executor':<24} {'steps':>5} {'seconds':>8} {'vs local':>9} {'startup s':>10}"]
    for row in rows:
        startup = row.get("startup_s")
        lines.append(
            f"{row['executor']!s:<24} {row['steps']!s:>5} {row['seconds']:>8.2f} "
            f"{row['speedup_vs_local']:>8.2f}x {'' if startup is None else f'{startup:.1f}':>10}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (CI)")
    parser.add_argument(
        "--ray", action="store_true", help="also run on a local Ray (starting it takes seconds)"
    )
    arguments = parser.parse_args()
    print(f"CPU-heavy fan-out on {os.cpu_count()} CPU(s)")
    print(_table(run(arguments.quick, with_ray=arguments.ray)))
