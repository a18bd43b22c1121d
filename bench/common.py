"""Helpers every scenario shares: timing, peak RSS, temporary stores, percentiles.

Nothing here imports evkit, so the floors measure plain asyncio and DuckDB only.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator


def peak_rss_mb() -> float:
    """The peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def temp_store(name: str = "bench.duckdb") -> Iterator[str]:
    """A path for a fresh DuckDB file in a temporary directory removed afterwards.

    The directory sits next to the checkout (same disk as users' stores), not on a tmpfs.
    """
    base = os.environ.get("EVKIT_BENCH_DIR") or None
    directory = tempfile.mkdtemp(prefix="evkit-bench-", dir=base)
    try:
        yield os.path.join(directory, name)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, by linear interpolation."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[max(0, min(98, round(q) - 1))]


class Stopwatch:
    """``perf_counter`` laps: ``lap(name)`` records the seconds since the previous lap."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self._last = self.start
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now
        return self.laps[name]

    def total(self) -> float:
        return time.perf_counter() - self.start


def warm_arrow() -> None:
    """Pay pyarrow's one-off cost before timing: its first conversion of a Python list
    imports pandas when pandas is installed (~0.25 s, once per process).

    evkit's writer and the floor both append Arrow batches; the cold-start scenario does
    not call this, so that cost is counted there.
    """
    import pyarrow as pa

    pa.array(["warm"])
