"""The codec: pickled blobs and the readable text the store shows to SQL, on odd values too."""

from __future__ import annotations

import dataclasses
import json
import math
import threading

import cloudpickle
import pytest
from hypothesis import given, settings, strategies as st

from evkit import codec


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("é\n", '"\\u00e9\\n"'),  # JSON, ASCII-escaped as json.dumps does
        (2**100, "1267650600228229401496703205376"),  # big ints stay exact
        (-0.0, "-0.0"),
        (1e300, "1e+300"),
        (True, "true"),
        (None, "null"),
        ((1, "a"), '[1, "a"]'),  # a tuple reads as a JSON list
        ([True, None], "[true, null]"),
        ({1: 2}, '{"1": 2}'),  # JSON turns int keys into strings
        ({"a": {"b": [1.5, "x"]}}, '{"a": {"b": [1.5, "x"]}}'),
        ((), "[]"),
        (float("nan"), "nan"),  # not JSON: a repr
        (float("-inf"), "-inf"),
        ({"a": [1.5, float("nan")]}, "{'a': [1.5, nan]}"),  # one NaN inside: the whole is a repr
        (b"ab\x00", "b'ab\\x00'"),
        (bytearray(b"x"), "bytearray(b'x')"),
        ({(1, 2): 3}, "{(1, 2): 3}"),  # a key JSON cannot have
        (1 + 2j, "(1+2j)"),
        (frozenset({3}), "frozenset({3})"),
    ],
)
def test_readable_is_json_when_the_value_allows_and_a_repr_otherwise(value: object, text: str) -> None:
    assert codec.readable(value) == text


def test_readable_bounds_long_reprs_and_survives_cycles() -> None:
    assert codec.readable(set(range(100))) == "{" + ", ".join(map(str, range(50))) + ", ...}"
    cycle: list[object] = [1]
    cycle.append(cycle)
    assert codec.readable(cycle) == "[1, [1, [1, [1, [1, [1, [...]]]]]]]"
    assert codec.readable("x" * 20_000) == '"' + "x" * 9_999 + "..."
    assert len(codec.readable(list(range(5_000)))) == 10_003


def test_readable_falls_back_when_even_repr_fails() -> None:
    class Opaque:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    # reprlib already replaces a failing repr of a plain instance.
    assert codec.readable(Opaque()).startswith("<Opaque instance at 0x")
    assert codec.readable([Opaque()]).startswith("[<Opaque instance at 0x")


def test_to_json_is_strict_json_or_none() -> None:
    assert codec.to_json({"a": [1, None]}) == '{"a": [1, null]}'
    assert codec.to_json({1: 2}) == '{"1": 2}'
    assert codec.to_json(float("nan")) is None
    assert codec.to_json(b"x") is None
    assert codec.to_json({"k": {1, 2}}) is None


@dataclasses.dataclass(frozen=True)
class Order:
    order_id: int
    items: tuple[str, ...]


def test_dumps_round_trips_odd_values_and_local_functions() -> None:
    for value in (2**200, -(2**70), b"\x00\xff", bytearray(b"ab"), {"n": [1, (2, {3})]}, Order(7, ("a",))):
        assert codec.loads(codec.dumps(value)) == value
    nan = codec.loads(codec.dumps(float("nan")))
    assert isinstance(nan, float)
    assert math.isnan(nan)
    offset = 10
    assert codec.loads(codec.dumps(lambda x: x + offset))(1) == 11  # type: ignore[operator]


def test_dumps_names_the_type_and_the_reason_when_a_value_cannot_be_pickled() -> None:
    with pytest.raises(
        TypeError, match=r"^cannot pickle a value of type dict: cannot pickle '_thread.lock' object$"
    ) as info:
        codec.dumps({"k": threading.Lock()})
    assert isinstance(info.value.__cause__, TypeError)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@pytest.mark.slow
@settings(max_examples=50, deadline=None)
@given(json_values)
def test_readable_of_json_values_is_exactly_json_dumps(value: object) -> None:
    # The scalar and short-list fast paths must write what the JSON encoder writes.
    assert codec.readable(value) == json.dumps(value, allow_nan=False)
    assert codec.to_json(value) == json.dumps(value, allow_nan=False)


plain_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**64, max_value=2**400)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(plain_values)
def test_plain_values_pickle_to_the_bytes_cloudpickle_writes(value: object) -> None:
    # dumps takes the standard pickler for plain values (it is faster); blobs must not
    # depend on which path wrote them.
    blob = codec.dumps(value)
    assert blob == cloudpickle.dumps(value)
    assert codec.loads(blob) == value


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(
    st.recursive(
        plain_values,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.tuples(inner, inner)
            | st.frozensets(st.integers() | st.text(max_size=5), max_size=4)
            | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4)
        ),
        max_leaves=15,
    )
)
def test_nested_values_round_trip(value: object) -> None:
    assert codec.loads(codec.dumps(value)) == value
