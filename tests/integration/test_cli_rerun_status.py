"""``evkit status ID`` shows each step's generation and whether a re-run reused it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from evkit import workflow

pytestmark = pytest.mark.slow  # starts a Python process

_CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200"}


@workflow.step
def load() -> int:
    return 21


@workflow.step
def scale(x: int, factor: int) -> int:
    return x * factor


def test_status_shows_generations_and_reused_steps(store_path: str) -> None:
    workflow.init(storage=store_path, loop="thread")
    try:
        assert scale.step(load.step(), 2).run(workflow_id="w") == 42
        assert scale.step(load.step(), 3).run(workflow_id="w") == 63
    finally:
        workflow.shutdown()
    done = subprocess.run(
        [sys.executable, "-m", "evkit.cli", "status", "w", "--json", "--storage", store_path],
        capture_output=True,
        text=True,
        timeout=60,
        env=_CHILD_ENV,
    )
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert sorted((s["step_id"], s["generation"], s["reused"], s["result"]) for s in steps) == [
        ("load", 1, True, "21"),
        ("scale", 2, False, "63"),
    ]
