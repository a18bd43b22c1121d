"""fewer_gc_passes: the GC thresholds are raised inside the block only, then the user's again."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from evkit.gcscope import fewer_gc_passes


@pytest.fixture(autouse=True)
def user_thresholds() -> Iterator[tuple[int, int, int]]:
    """Thresholds unlike CPython's defaults, as a user may set them, put back afterwards so
    no other test runs with them."""
    saved = gc.get_threshold()
    gc.set_threshold(900, 11, 12)
    yield gc.get_threshold()
    gc.set_threshold(*saved)


def test_the_block_raises_the_first_threshold_and_puts_the_users_back(
    user_thresholds: tuple[int, int, int],
) -> None:
    with fewer_gc_passes():
        assert gc.get_threshold() == (1_000_000, 11, 12)
    assert gc.get_threshold() == user_thresholds


def test_the_users_thresholds_come_back_when_the_block_raises(user_thresholds: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match=r"^inside$"), fewer_gc_passes():
        raise ValueError("inside")
    assert gc.get_threshold() == user_thresholds


def test_a_disabled_block_changes_nothing(user_thresholds: tuple[int, int, int]) -> None:
    with fewer_gc_passes(False):
        assert gc.get_threshold() == user_thresholds
    assert gc.get_threshold() == user_thresholds


def test_overlapping_blocks_in_two_threads_restore_once_the_last_one_ends(
    user_thresholds: tuple[int, int, int],
) -> None:
    entered, may_leave, left = threading.Event(), threading.Event(), threading.Event()

    def other_thread() -> None:
        with fewer_gc_passes():
            entered.set()
            may_leave.wait(timeout=10)
        left.set()

    thread = threading.Thread(target=other_thread)
    with fewer_gc_passes():
        thread.start()
        assert entered.wait(timeout=10)
    # Our block ended, the other thread's has not: still raised.
    assert gc.get_threshold() == (1_000_000, 11, 12)
    may_leave.set()
    assert left.wait(timeout=10)
    thread.join(timeout=10)
    assert gc.get_threshold() == user_thresholds


def test_thresholds_the_user_set_inside_the_block_are_kept() -> None:
    with fewer_gc_passes():
        gc.set_threshold(5_000, 20, 20)
    assert gc.get_threshold() == (5_000, 20, 20)
