"""Fewer cyclic-GC passes for one synchronous section that builds many long-lived objects.

Owns :func:`fewer_gc_passes` and nothing else. The GC's thresholds are process-wide, so
the helper changes them only for the time of a block that returns within the call that
entered it (never across an ``await``), and puts them back when the block ends.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

# Inside the block a young collection waits for this many new objects instead of 700.
_THRESHOLD0 = 1_000_000

BIG_RUN_STEPS = 5_000
"""From this many steps a DAG or a run is big enough for its synchronous sections (and a
blocking wait for it) to run with fewer GC passes."""
_lock = threading.Lock()
_holders = 0
_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def fewer_gc_passes(enabled: bool = True) -> Iterator[None]:
    """Run the block with the cyclic GC's first threshold raised (if ``enabled``).

    For synchronous work that makes objects which all live on, such as flattening,
    pickling or unpickling a big DAG: each GC pass there finds no garbage, and each full
    pass walks every object alive. Use it only around code that returns without awaiting:
    the thresholds apply to every thread, and must be the user's again when the call
    returns. Blocks may overlap (in several threads); the thresholds in force before the
    first one come back when the last one ends, unless someone changed them meanwhile.

    Args:
        enabled: When false, the block runs with the thresholds as they are (for callers
            that raise them only for big inputs).

    Yields:
        Nothing: the block runs with the raised threshold.
    """
    global _holders, _saved
    if not enabled:
        yield
        return
    with _lock:
        if _holders == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(max(_saved[0], _THRESHOLD0), _saved[1], _saved[2])
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _saved is not None:
                if gc.get_threshold()[0] == max(_saved[0], _THRESHOLD0):
                    gc.set_threshold(*_saved)
                _saved = None
