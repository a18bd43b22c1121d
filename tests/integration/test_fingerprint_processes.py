"""Fingerprints are the same in every process: a kernel restart must not look like an edit.

str hashing is salted per process (PYTHONHASHSEED), so a set of strings iterates in
another order in another process; a digest that followed that order would re-run steps
whose code did not change. Two interpreters with different seeds digest the same code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.allow_blocking]

CHILD = r'''
import json
from evkit.fingerprint import function_fingerprint, value_fingerprint

source = """
WORDS = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}
TABLE = {"keys": frozenset({"k1", "k2", "k3", "k4", "k5"}), "n": 3}

class Kind:
    NAMES = {"red", "green", "blue", "cyan", "magenta"}

    def is_known(self, word):
        return word in {"one", "two", "three", "four", "five", "six"}

def step(word):
    return word in WORDS and Kind().is_known(word) and TABLE["n"] > 2
"""
namespace = {"__name__": "__main__"}
exec(compile(source, "<cell>", "exec"), namespace)
print(json.dumps({
    "step": function_fingerprint(namespace["step"]),
    "class": function_fingerprint(namespace["Kind"]),
    "value": value_fingerprint({"s", "t", "u", "v", "w", "x", "y", "z"}),
}))
'''


def digests_with_hash_seed(seed: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_digests_do_not_depend_on_the_process_str_hash_seed() -> None:
    first = digests_with_hash_seed("1")
    assert digests_with_hash_seed("2") == first
    assert digests_with_hash_seed("12345") == first
