"""Turns Python values into what the store keeps: a cloudpickle blob and a readable text.

The blob is what evkit loads back; the text (JSON when the value allows, else a repr) is
for people and SQL. This module does no I/O.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import operator
import pickle
import reprlib
import sys
from collections.abc import Callable

import cloudpickle

_MAX_TEXT = 10_000
_PLAIN = frozenset({type(None), bool, int, float, str, bytes})
# json.dumps(..., allow_nan=False) builds a new encoder on every call; reuse one.
_JSON = json.JSONEncoder(allow_nan=False)
_JSON_TYPES = (dict, list, tuple, str, int, float)  # and their subclasses: what JSONEncoder encodes
_repr = reprlib.Repr()
_repr.maxstring = 2_000
_repr.maxother = 2_000
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 50


def dumps(value: object) -> bytes:
    """Pickle ``value`` with cloudpickle (functions and classes by value where needed).

    Raises:
        TypeError: The value cannot be pickled; the message names its type.
    """
    if type(value) in _PLAIN or _is_plain_record(value):
        # cloudpickle builds a new Pickler and calls back into Python for every object it
        # writes; for these values the standard pickler at cloudpickle's protocol writes
        # the same bytes without that (see _is_plain_record).
        try:
            return pickle.dumps(value, protocol=cloudpickle.DEFAULT_PROTOCOL)
        except Exception:  # cloudpickle, below, says what is wrong with it
            pass
    try:
        blob: bytes = cloudpickle.dumps(value)
    except Exception as exc:  # pickling can raise almost anything
        raise TypeError(f"cannot pickle a value of type {type(value).__qualname__}: {exc}") from exc
    return blob


def _is_plain_record(value: object) -> bool:
    """True for a dataclass or NamedTuple whose class pickles by name and whose fields are plain.

    cloudpickle pickles such a value exactly as the standard pickler does: it differs
    only for functions, classes and modules it writes by value (those of ``__main__``,
    of modules registered with ``cloudpickle.register_pickle_by_value``, or defined
    inside a function), and a plain field holds none of them.
    """
    cls = type(value)
    try:
        fields_of = _RECORD_FIELDS[cls]
    except KeyError:
        fields_of = _record_fields(cls)
        if len(_RECORD_FIELDS) < _MAX_RECORD_CLASSES:  # classes made in a loop must not pile up
            _RECORD_FIELDS[cls] = fields_of
    if fields_of is None or (cloudpickle.list_registry_pickle_by_value() and _by_value(cls)):
        return False
    return _is_plain_tuple(fields_of(value), 0)


# Per class: what reads its field values if it may take the standard pickler, else None.
_RECORD_FIELDS: dict[type, Callable[[object], tuple[object, ...]] | None] = {}
_MAX_RECORD_CLASSES = 1_000
_PLAIN_NESTING = 3  # tuples of tuples of plain values (a message's headers), no deeper


def _is_plain_tuple(items: tuple[object, ...], depth: int) -> bool:
    for item in items:
        if type(item) in _PLAIN:
            continue
        if type(item) is not tuple or depth >= _PLAIN_NESTING or not _is_plain_tuple(item, depth + 1):
            return False
    return True


def _record_fields(cls: type) -> Callable[[object], tuple[object, ...]] | None:
    fields: tuple[str, ...] = getattr(cls, "_fields", None) or ()
    named_tuple = issubclass(cls, tuple) and isinstance(fields, tuple)
    allowed_bases: tuple[type, ...] = (tuple, object)
    if not named_tuple:
        if not dataclasses.is_dataclass(cls):
            return None
        fields, allowed_bases = tuple(f.name for f in dataclasses.fields(cls)), (object,)
    # Its own pickling methods could write anything: only the ones dataclasses generate.
    for klass in cls.__mro__:
        if klass in allowed_bases:
            continue
        for hook in ("__reduce__", "__reduce_ex__", "__getstate__", "__setstate__", "__getnewargs__"):
            method = vars(klass).get(hook)
            if method is not None and not _generated(method):
                return None
    if not fields or not _importable(cls) or _by_value(cls):
        return None
    if named_tuple:
        return _as_tuple
    get = operator.attrgetter(*fields)
    return (lambda value: (get(value),)) if len(fields) == 1 else get


def _generated(method: object) -> bool:
    """A pickling method that ``dataclasses`` or ``namedtuple`` wrote (it pickles the fields)."""
    code = getattr(method, "__code__", None)
    return code is _NAMEDTUPLE_GETNEWARGS or getattr(method, "__qualname__", "").startswith("_dataclass_")


_NAMEDTUPLE_GETNEWARGS = collections.namedtuple("_Probe", "").__getnewargs__.__code__  # type: ignore[attr-defined]


def _as_tuple(value: object) -> tuple[object, ...]:
    return value  # type: ignore[return-value]  # a NamedTuple is its own field values


def _importable(cls: type) -> bool:
    """The class is found under its module and qualified name (so pickle writes its name)."""
    module = sys.modules.get(cls.__module__)
    if module is None or cls.__module__ == "__main__":
        return False
    if getattr(module, "__file__", None) is None and getattr(module, "__spec__", None) is None:
        return False  # made at run time (types.ModuleType): cloudpickle writes it by value
    found: object = module
    for part in cls.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is cls


def _by_value(cls: type) -> bool:
    """The class's module (or a package of it) is registered to be pickled by value."""
    registered = cloudpickle.list_registry_pickle_by_value()
    parts = cls.__module__.split(".")
    return any(".".join(parts[: i + 1]) in registered for i in range(len(parts)))


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
        elif isinstance(value, _JSON_TYPES):
            text = _JSON.encode(value)
        else:
            text = _repr.repr(value)  # json would only raise TypeError for it
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
