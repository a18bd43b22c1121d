"""Serialization for the store, and the fake clock."""

from __future__ import annotations

import asyncio
import threading

import pytest

from evkit import codec
from evkit.clock import FakeClock


def test_readable_is_json_when_possible_and_a_repr_otherwise() -> None:
    assert codec.readable({"a": [1, 2]}) == '{"a": [1, 2]}'
    assert codec.readable({1, 2}) == "{1, 2}"
    assert codec.readable(float("nan")) == "nan"
    assert len(codec.readable("x" * 50_000)) <= 10_003


def test_dumps_names_the_type_that_cannot_be_pickled() -> None:
    with pytest.raises(TypeError, match=r"^cannot pickle a value of type lock"):
        codec.dumps(threading.Lock())
    assert codec.loads(codec.dumps(lambda x: x + 1))(1) == 2  # type: ignore[operator]


def test_fake_clock_wakes_sleepers_only_when_advanced_past_their_deadline() -> None:
    clock = FakeClock(start=100.0)

    async def scenario() -> list[str]:
        woke: list[str] = []

        async def sleeper(name: str, deadline: float) -> None:
            await clock.sleep_until(deadline)
            woke.append(name)

        tasks = [asyncio.create_task(sleeper("a", 105)), asyncio.create_task(sleeper("b", 110))]
        await asyncio.sleep(0)
        assert clock.sleepers == 2
        clock.advance(5)
        await tasks[0]
        assert woke == ["a"]
        clock.advance(5)
        await tasks[1]
        await clock.sleep_until(50)  # a past deadline returns at once
        return woke

    assert asyncio.run(scenario()) == ["a", "b"]
    with pytest.raises(ValueError, match="must not be negative"):
        clock.advance(-1)
