"""The benchmark suite's quick mode runs end to end (CI checks it works; numbers are not
asserted: benchmarks are not timed tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _kafka import kafka_available

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_benchmark_suite_exits_zero_and_prints_the_table(tmp_path: Path) -> None:
    env = {**os.environ, "EVKIT_BENCH_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(tmp_path / "results.json")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # The first column is as wide as the longest scenario number (10 and up take two).
    header = next(line for line in proc.stdout.splitlines() if line.split()[:2] == ["#", "scenario"])
    assert header.split() == [
        "#",
        "scenario",
        "case",
        "metric",
        "evkit",
        "floor",
        "ratio",
        "target",
        "met",
        "note",
    ]
    for scenario in (
        "concurrent waits, manual events",
        "event sent -> downstream step start",
        "durable checkpoint throughput",
        "per-step overhead, chain",
        "resume",
        "cold start",
        "live widget",
        "re-run: compare with the stored run",
        "clients: send_event",
        "step fingerprints",
    ):
        assert scenario in proc.stdout, f"no row for {scenario!r} in:\n{proc.stdout}"
    if kafka_available():
        assert "Kafka messages through KafkaListener waits" in proc.stdout, proc.stdout
    assert "FAILED" not in proc.stderr
    assert (tmp_path / "results.json").exists()
