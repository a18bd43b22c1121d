"""Integration tests run the engine, listeners and store on a real loop and a real file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from blockbuster import BlockBuster, blockbuster_ctx


@pytest.fixture(autouse=True)
def blockbuster(request: pytest.FixtureRequest) -> Iterator[BlockBuster | None]:
    """Fail any test whose code blocks the event loop (time.sleep, blocking file or socket
    I/O on the loop thread). It cannot see inside DuckDB's C calls: test_store checks
    separately that store work runs off the loop thread."""
    if request.node.get_closest_marker("allow_blocking"):
        yield None
        return
    with blockbuster_ctx() as bb:
        # FakeClock guards its sleeper list with a lock that is only ever held for a few
        # instructions (so tests on other threads can wait for sleepers); that is not I/O.
        for name in ("threading.Lock.acquire", "threading.Lock.acquire_lock"):
            bb.functions[name].can_block_functions.append(("evkit/clock.py", {"sleep_until", "alarm"}))
        yield bb
