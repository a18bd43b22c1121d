"""What a run stores for its fingerprints, and re-runs of stores that hold the older form.

A first run stores only its functions' code digests (a handful, whatever the DAG's size);
a re-run derives the stored side's step fingerprints from the stored DAG and them.
``data/store_v4.duckdb.gz`` was written by ``data/make_store_v4.py`` with the evkit whose
schema version 4 stored every step's fingerprints as a pickled dict; ``data/rerun_store_v4.py``
re-runs its runs (and forks one) as their user would, in a fresh process.
"""

from __future__ import annotations

import gzip
import importlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import types

import pytest

import evkit
from evkit import codec, workflow
from evkit.execution.prints import DagCodes, decode_record

DATA = pathlib.Path(__file__).parent / "data" / "store_v4.duckdb.gz"


@workflow.step
def one(i: int) -> int:
    return 1


@workflow.step
def total(*values: int) -> int:
    return sum(values)


@workflow.step
def scaled(values: list[int], factor: int) -> int:
    return sum(values) * factor


@pytest.fixture
def dict_form_store(store_path: str) -> str:
    """The store with the dict form unpacked to this test's own file (re-runs write to it)."""
    with gzip.open(DATA) as packed, open(store_path, "wb") as out:
        shutil.copyfileobj(packed, out)
    return store_path


def _records(workflow_id: str) -> list[bytes]:
    rows = evkit.sql(
        "SELECT fingerprints_blob FROM run_definitions WHERE workflow_id = ? ORDER BY seq", [workflow_id]
    ).fetchall()
    return [bytes(blob) for (blob,) in rows]


@pytest.mark.slow
def test_a_first_run_stores_one_code_digest_per_function_not_per_step(store_path: str) -> None:
    workflow.init(storage=store_path, loop="thread")
    try:
        assert total.step(*[one.step(i) for i in range(2_000)]).run(workflow_id="fan") == 2_000
        [record] = _records("fan")
        # Two functions: two digests; the dict form held 2,001 pairs of hex digests (~170 kB).
        assert len(record) < 200, len(record)
        decoded = decode_record(record)
        assert isinstance(decoded, DagCodes)
        assert len(decoded.codes) == 2
        assert decoded.arguments == {}
    finally:
        workflow.shutdown()


@pytest.mark.slow
def test_a_list_argument_is_digested_at_the_first_run_and_a_change_to_it_reruns_the_step(
    store_path: str,
) -> None:
    workflow.init(storage=store_path, loop="thread")
    try:
        assert scaled.step([one.step(0), 2], 3).run(workflow_id="w") == 9
        [record] = _records("w")
        decoded = decode_record(record)
        assert isinstance(decoded, DagCodes)
        assert list(decoded.arguments) == ["scaled"]  # the list: its text is kept, not derived later
        handle = workflow.run_async(scaled.step([one.step(0), 2], 3), workflow_id="w")
        assert handle.result() == 9
        assert handle.plan is not None
        assert handle.plan.reused == ("one", "scaled")
        handle = workflow.run_async(scaled.step([one.step(0), 5], 3), workflow_id="w")
        assert handle.result() == 18
        assert handle.plan is not None
        assert dict(handle.plan.rerun) == {"scaled": "input changed"}
    finally:
        workflow.shutdown()


@pytest.mark.slow
def test_runs_stored_with_every_step_fingerprint_re_run_and_fork_as_before(dict_form_store: str) -> None:
    workflow.init(storage=dict_form_store, loop="thread")
    try:
        assert all(isinstance(codec.loads(blob), dict) for blob in _records("w1") + _records("w2"))
    finally:
        workflow.shutdown()
    child = subprocess.run(
        [sys.executable, str(DATA.with_name("rerun_store_v4.py")), dict_form_store],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == {
        "w1 fixed": {"output": 47, "reused": ["load", "approval"], "rerun": {"double": "code changed"}},
        "w2 forked": {
            "output": 88,
            "reused": ["load", "load_1"],
            "rerun": {"scale": "rerun", "total": "input changed"},
        },
        "w2 again": {"output": 88, "reused": ["load", "scale", "load_1", "total"], "rerun": {}},
        "w2 extra 5": {
            "output": 89,
            "reused": ["load", "scale", "load_1"],
            "rerun": {"total": "input changed"},
        },
    }
    workflow.init(storage=dict_form_store, loop="thread")
    try:
        # The re-runs wrote the new record; the first definitions keep the dict.
        assert [isinstance(decode_record(blob), DagCodes) for blob in _records("w2")] == [False, True]
        assert evkit.sql(
            "SELECT step_id, generation, reused FROM steps WHERE workflow_id = 'w2' ORDER BY step_id"
        ).fetchall() == [("load", 1, True), ("load_1", 1, True), ("scale", 1, True), ("total", 2, False)]
    finally:
        workflow.shutdown()


def _module(directory: pathlib.Path, name: str) -> types.ModuleType:
    (directory / f"{name}.py").write_text("def one(i):\n    return 1\n")
    return importlib.import_module(name)


@pytest.mark.slow
def test_a_run_whose_code_is_gone_is_still_compared_step_by_step(
    store_path: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    gone = _module(tmp_path, "fingerprint_gone_helpers")
    workflow.init(storage=store_path, loop="thread")
    try:
        # A module's plain function is stored by reference: its module must be importable.
        one_gone = workflow.step(gone.one)
        assert total.step(one_gone.step(0), one_gone.step(1)).run(workflow_id="w") == 2
        (tmp_path / "fingerprint_gone_helpers.py").unlink()
        monkeypatch.delitem(sys.modules, "fingerprint_gone_helpers")
        # The user moved the function to another module, unchanged.
        moved = workflow.step(_module(tmp_path, "fingerprint_moved_helpers").one)
        handle = workflow.run_async(total.step(moved.step(0), moved.step(1)), workflow_id="w")
        assert handle.result() == 2
        assert handle.plan is not None
        assert (handle.plan.reused, dict(handle.plan.rerun)) == (("one", "one_1", "total"), {})
    finally:
        workflow.shutdown()
        sys.modules.pop("fingerprint_moved_helpers", None)
