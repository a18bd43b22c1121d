"""Turns Python values into what the store keeps: a cloudpickle blob and a readable text.

The blob is what evkit loads back; the text (JSON when the value allows, else a repr) is
for people and SQL. This module does no I/O.
"""

from __future__ import annotations

import json
import pickle
import reprlib

import cloudpickle

_MAX_TEXT = 10_000
_PLAIN = frozenset({type(None), bool, int, float, str, bytes})
# json.dumps(..., allow_nan=False) builds a new encoder on every call; reuse one.
_JSON = json.JSONEncoder(allow_nan=False)
_repr = reprlib.Repr()
_repr.maxstring = 2_000
_repr.maxother = 2_000
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 50


def dumps(value: object) -> bytes:
    """Pickle ``value`` with cloudpickle (functions and classes by value where needed).

    Raises:
        TypeError: The value cannot be pickled; the message names its type.
    """
    if type(value) in _PLAIN:
        # cloudpickle builds a new Pickler on every call; a plain value pickles to the
        # same bytes with the standard pickler at cloudpickle's protocol, without that setup.
        return pickle.dumps(value, protocol=cloudpickle.DEFAULT_PROTOCOL)
    try:
        blob: bytes = cloudpickle.dumps(value)
    except Exception as exc:  # pickling can raise almost anything
        raise TypeError(f"cannot pickle a value of type {type(value).__qualname__}: {exc}") from exc
    return blob


def loads(blob: bytes) -> object:
    """Load a blob written by :func:`dumps`."""
    return cloudpickle.loads(blob)


def readable(value: object) -> str:
    """JSON for JSON-able values, otherwise a bounded repr; never raises."""
    kind = type(value)
    try:
        # Scalars first: JSONEncoder.encode builds a C encoder per call for anything else.
        if kind is str:
            text = _JSON.encode(value)
        elif kind is int:
            text = int.__repr__(value)
        elif value is None or kind is bool:
            text = "null" if value is None else "true" if value else "false"
        elif (kind is list or kind is tuple) and all(type(v) is str or type(v) is int for v in value):  # type: ignore[attr-defined]
            # A wait's arguments, usually: the same text json would write.
            items = [_JSON.encode(v) if type(v) is str else int.__repr__(v) for v in value]  # type: ignore[attr-defined]
            text = "[" + ", ".join(items) + "]"
        else:
            text = _JSON.encode(value)
    except (TypeError, ValueError, RecursionError):
        try:
            text = _repr.repr(value)
        except Exception as exc:  # a broken __repr__ must not break a checkpoint
            text = f"<{type(value).__qualname__} (repr failed: {exc!r})>"
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT] + "..."
    return text


def to_json(value: object) -> str | None:
    """Strict JSON of ``value``, or ``None`` when it is not JSON-serializable."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None
