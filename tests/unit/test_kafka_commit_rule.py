"""The Kafka commit rule (evkit.listeners.kafka_message.PartitionCommits): the offset committed for a
partition never passes a message that is not checkpointed and never moves backwards,
whatever order parallel waits checkpoint in."""

from __future__ import annotations

from hypothesis import given, strategies as st

from evkit.listeners.kafka_message import PartitionCommits


def test_out_of_order_checkpoints_commit_only_up_to_the_first_unfinished_message() -> None:
    partition = PartitionCommits()
    for offset in (5, 6, 7):
        partition.read(offset)
    partition.done(7)
    assert partition.target() == 5  # 5 and 6 are still in flight: committing 8 would lose them
    partition.done(5)
    assert partition.target() == 6
    partition.done(6)
    assert partition.target() == 8


def test_offset_gaps_do_not_hold_the_commit_back() -> None:
    # Offsets of a partition need not be contiguous (compaction, transaction markers).
    partition = PartitionCommits()
    partition.read(3)
    partition.read(9)
    partition.done(3)
    assert partition.target() == 4  # the broker resumes at 9: there is nothing between
    partition.done(9)
    assert partition.target() == 10


def test_nothing_is_committed_before_a_checkpoint() -> None:
    partition = PartitionCommits()
    partition.read(0)
    assert partition.target() == -1


@given(st.permutations(list(range(12))), st.integers(min_value=1, max_value=12))
def test_any_checkpoint_order_keeps_the_target_monotonic_and_safe(order: list[int], done_count: int) -> None:
    partition = PartitionCommits()
    for offset in range(12):
        partition.read(offset)
    finished: set[int] = set()
    last = -1
    for offset in order[:done_count]:
        partition.done(offset)
        finished.add(offset)
        target = partition.target()
        assert target >= last
        # Every offset below the target is checkpointed: a crash now loses nothing.
        assert all(o in finished for o in range(max(target, 0)))
        last = target
