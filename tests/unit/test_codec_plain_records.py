"""codec.dumps writes records of plain fields with the standard pickler, byte for byte as
cloudpickle would, and leaves everything cloudpickle writes differently to cloudpickle."""

from __future__ import annotations

import dataclasses
import pickle
import sys
from typing import NamedTuple

import cloudpickle
import pytest

from evkit import codec
from evkit.listeners.kafka_message import KafkaMessage


class Point(NamedTuple):
    x: int
    label: str
    tags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    sensor: str
    value: float
    extra: object = None


@dataclasses.dataclass
class Custom:
    value: int

    def __reduce__(self) -> tuple[object, ...]:
        return (Custom, (self.value + 1,))


def message() -> KafkaMessage:
    return KafkaMessage(
        topic="orders",
        partition=2,
        offset=41,
        key=b"k",
        value=b'{"n": 1}',
        headers=(("trace", b"1"), ("empty", None)),
        timestamp_ms=1_765_000_000_000,
        group="g",
        bootstrap_servers="127.0.0.1:9092",
        config=(("session.timeout.ms", 6000),),
    )


@pytest.fixture
def no_cloudpickle(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(value: object, *args: object, **kwargs: object) -> bytes:
        raise AssertionError(f"cloudpickle.dumps was called for {value!r}")

    monkeypatch.setattr(cloudpickle, "dumps", refuse)


@pytest.mark.parametrize(
    "value",
    [message(), Point(1, "a", ("t",)), Reading("s1", 1.5), Reading("s1", 1.5, extra=(1, ("x", b"y")))],
    ids=["KafkaMessage", "NamedTuple", "dataclass", "nested tuples"],
)
def test_a_record_of_plain_fields_skips_cloudpickle_and_pickles_to_the_same_bytes(
    value: object, no_cloudpickle: None
) -> None:
    blob = codec.dumps(value)
    assert codec.loads(blob) == value
    assert blob == pickle.dumps(value, protocol=cloudpickle.DEFAULT_PROTOCOL)


@pytest.mark.parametrize(
    "value",
    [message(), Point(1, "a"), Reading("s1", 1.5)],
    ids=["KafkaMessage", "NamedTuple", "dataclass"],
)
def test_the_standard_pickler_writes_what_cloudpickle_writes_for_them(value: object) -> None:
    assert codec.dumps(value) == cloudpickle.dumps(value)


def test_a_field_cloudpickle_writes_by_value_keeps_the_record_on_cloudpickle() -> None:
    def local() -> str:
        return "ran"

    value = Reading("s1", 1.0, extra=local)
    assert not codec._is_plain_record(value)
    loaded = codec.loads(codec.dumps(value))
    assert isinstance(loaded, Reading)
    assert loaded.extra() == "ran"  # type: ignore[operator]


def test_classes_cloudpickle_writes_by_value_or_that_pickle_themselves_stay_on_cloudpickle() -> None:
    @dataclasses.dataclass
    class Local:  # defined in a function: cloudpickle writes the class by value
        value: int

    assert not codec._is_plain_record(Local(1))
    assert codec.loads(codec.dumps(Local(1))).value == 1  # type: ignore[attr-defined]
    assert not codec._is_plain_record(Custom(1))
    assert codec.loads(codec.dumps(Custom(1))) == Custom(2)  # its own __reduce__ ran


def test_a_module_registered_to_pickle_by_value_stays_on_cloudpickle() -> None:
    module = sys.modules[__name__]
    value = Point(1, "a")
    assert codec._is_plain_record(value)
    cloudpickle.register_pickle_by_value(module)
    try:
        assert not codec._is_plain_record(value)
        assert codec.dumps(value) == cloudpickle.dumps(value)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    assert codec._is_plain_record(value)
