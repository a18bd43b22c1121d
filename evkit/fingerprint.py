"""Fingerprints: short digests that change when a step's code or inputs change.

A re-run compares the fingerprints of the DAG it is given with those stored for the run
to decide which checkpoints it may reuse. This module computes digests and runs nothing.

This first version digests a function's own code object (bytecode, constants and names,
recursively through nested code), its defaults and its closure's values; a value by its
pickled bytes.
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Callable, Iterable

from evkit import codec

DIGEST_SIZE = 16


def _hasher() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=DIGEST_SIZE)


def _feed_code(code: types.CodeType, feed: Callable[[bytes], None]) -> None:
    feed(code.co_code)
    feed(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(const, feed)
        else:
            feed(repr(const).encode())


def function_fingerprint(func: Callable[..., object]) -> str:
    """The digest of the code ``func`` runs: a new one when its definition changes.

    Re-defining a function with the same source gives the same digest.
    """
    hasher = _hasher()
    code = getattr(func, "__code__", None)
    if code is None:
        hasher.update(f"{type(func).__module__}.{type(func).__qualname__}".encode())
        return hasher.hexdigest()
    _feed_code(code, hasher.update)
    hasher.update(value_fingerprint(getattr(func, "__defaults__", None)).encode())
    hasher.update(value_fingerprint(getattr(func, "__kwdefaults__", None)).encode())
    for cell in getattr(func, "__closure__", None) or ():
        hasher.update(value_fingerprint(cell.cell_contents).encode())
    return hasher.hexdigest()


def value_fingerprint(value: object) -> str:
    """The digest of a literal argument or constant, by its pickled bytes."""
    return hashlib.blake2b(codec.dumps(value), digest_size=DIGEST_SIZE).hexdigest()


def combine(parts: Iterable[str]) -> str:
    """One digest for several: a step's code digest followed by its inputs' digests."""
    hasher = _hasher()
    for part in parts:
        hasher.update(part.encode())
        hasher.update(b"\0")
    return hasher.hexdigest()
