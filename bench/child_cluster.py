"""Adapter: runs ``bench.bench_cluster.run`` (the cluster engineer's scenario) in a child.

``bench.child`` prints one JSON object, so the rows are wrapped in ``{"rows": [...]}``.
"""

from __future__ import annotations


def run_rows(quick: bool) -> dict[str, object]:
    from bench.bench_cluster import run

    return {"rows": run(quick)}
