"""evkit's benchmark suite: each scenario next to a floor (plain asyncio + DuckDB) in one run.

Run it with ``python -m bench`` (``--quick`` for a smoke run under a minute). Every
measurement runs in a fresh subprocess so peak RSS is clean; see docs/performance.md.
"""
