"""``python -m bench [--quick]``: run every scenario and print one table (see runner.py)."""

from __future__ import annotations

from bench.runner import main

raise SystemExit(main())
