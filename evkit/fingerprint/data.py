"""What a fingerprint sees of a value: a canonical text for plain values, a cheap check of data.

Plain values (None, bools, numbers, short str/bytes and small containers of them) are
seen whole, in a text that is the same in every process. Anything else is data, seen by
a check whose cost does not grow with its size. Neither ever pickles.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import cast

# A container holding more items than this, or a str/bytes longer than SMALL_TEXT, is
# "data": seen by a cheap check (type, length, shape, a sample), not by value.
SMALL_ITEMS = 1_000
SMALL_TEXT = 65_536
# Containers nested deeper than this are data (and Python's recursion limit stays far).
MAX_NESTING = 50

SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes, type(Ellipsis)})


class TooBig(Exception):
    """A value is not plain, or outgrew its budget of items: it is data."""


def plain_text(value: object, budget: list[int], max_text: int = SMALL_TEXT, nesting: int = 0) -> str:
    """A canonical text for plain values and containers of them.

    Raises:
        TooBig: The value is not plain, or holds more items than ``budget[0]``.
    """
    kind = type(value)
    budget[0] -= 1
    if budget[0] < 0 or nesting > MAX_NESTING:
        raise TooBig
    nesting += 1
    if kind in SCALARS:
        if (kind is str or kind is bytes) and len(value) > max_text:  # type: ignore[arg-type]
            raise TooBig
        return repr(value)
    if kind is tuple or kind is list:
        items = cast("Iterable[object]", value)
        return f"{kind.__name__}(" + ",".join([plain_text(v, budget, max_text, nesting) for v in items]) + ")"
    if kind is dict:
        pairs = cast("dict[object, object]", value).items()
        texts = [
            f"{plain_text(k, budget, max_text, nesting)}:{plain_text(v, budget, max_text, nesting)}"
            for k, v in pairs
        ]
        return "dict(" + ",".join(texts) + ")"
    if kind is set or kind is frozenset:
        members = [plain_text(v, budget, max_text, nesting) for v in cast("Iterable[object]", value)]
        return f"{kind.__name__}(" + ",".join(sorted(members)) + ")"
    raise TooBig


def cheap_check(value: object) -> str:
    """What a fingerprint sees of data: type, length, shape, dtype and a first/last sample.

    Bounded whatever the size of ``value``, and never raises.
    """
    kind = type(value)
    parts = [f"data:{kind.__module__}.{kind.__qualname__}"]
    with contextlib.suppress(Exception):  # a user's object may raise anything from hasattr, len...
        _addcheap_check(value, parts)
    return " ".join(parts)


def _addcheap_check(value: object, parts: list[str]) -> None:
    for attribute in ("shape", "dtype", "dtypes", "columns"):
        try:
            found = getattr(value, attribute, None)
            if found is not None and not callable(found):
                parts.append(f"{attribute}={_bounded_repr(found)}")
        except Exception:  # a property of a user's object can raise anything
            pass
    with contextlib.suppress(Exception):  # no len(), or a broken one
        parts.append(f"len={len(value)}")  # type: ignore[arg-type]
    parts += [_sample_text(item) for item in _sample(value)]
    if not any(p.startswith(("len=", "shape=")) for p in parts) and hasattr(value, "__dict__"):
        try:
            attributes = dict(vars(value))
        except TypeError:
            attributes = {}
        if len(attributes) <= 50:
            parts += [f"{name}={_sample_text(item)}" for name, item in attributes.items()]


def _bounded_repr(value: object) -> str:
    if type(value) is tuple:
        return repr(value)
    text = str(value)
    if " at 0x" in text:  # a default repr: an address, different in every process
        return f"{type(value).__module__}.{type(value).__qualname__}"
    return text if len(text) <= 2_000 else text[:2_000] + "..."


def _sample(value: object) -> list[object]:
    try:
        flat = getattr(value, "flat", None)  # numpy arrays
        if flat is not None and getattr(value, "size", None):
            return [flat[0], flat[-1]]
        iat = getattr(value, "iat", None)  # pandas Series and DataFrames
        ndim = getattr(value, "ndim", None)
        if iat is not None and isinstance(ndim, int) and len(value):  # type: ignore[arg-type]
            return [iat[(0,) * ndim], iat[(-1,) * ndim]]
        if isinstance(value, (list, tuple, str, bytes, bytearray, range)) and len(value):
            return [value[0], value[-1]]
        if isinstance(value, dict) and value:
            first, last = next(iter(value.items())), next(reversed(value.items()))
            return [*first, *last]
    except Exception:  # a sample is a best effort: __getitem__ of a user's type can raise
        pass
    return []


def _sample_text(item: object) -> str:
    try:
        return plain_text(item, [50])
    except (TooBig, RecursionError):
        kind = type(item)
        if hasattr(item, "item") and hasattr(item, "dtype"):  # a numpy scalar
            try:
                return f"{kind.__qualname__}({plain_text(item.item(), [50])})"
            except Exception:  # not a plain scalar after all
                pass
        return f"{kind.__module__}.{kind.__qualname__}"
