"""Fingerprints: short digests that change when a step's code or inputs change.

A re-run compares the fingerprints of the DAG it is given with those stored for the run
to decide which checkpoints it may reuse. This module computes digests and runs nothing;
what a fingerprint sees, and what it does not, is in docs/design.md ("What a fingerprint
sees"). It must stay cheap: it runs for every step of every re-run. This module walks
code; ``evkit.fingerprint.data`` says what a digest sees of values.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import opcode
import os
import sys
import types
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast, final

from evkit import codec
from evkit.fingerprint.data import (
    MAX_NESTING,
    SCALARS,
    SMALL_ITEMS,
    TooBig,
    cheap_check,
    plain_text,
)

DIGEST_SIZE = 16
# Literal arguments are stored with the run anyway, so they are hashed whole, up to this
# many items by the plain encoding (beyond it, by their pickled bytes).
ARGUMENT_ITEMS = 1_000_000
# Helpers calling helpers deeper than this are seen by qualified name only (Python's own
# recursion limit would be reached otherwise).
MAX_HELPER_DEPTH = 100

_CODE_LIKE = (types.FunctionType, type)
_NO_CODE_CALLABLES = (
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
)
# Class attributes that say where a class was written or are rebuilt per definition,
# not what it does.
_CLASS_NOISE = frozenset(
    {"__dict__", "__weakref__", "__module__", "__qualname__", "__firstlineno__", "__static_attributes__"}
)


def _hasher() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=DIGEST_SIZE)


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=DIGEST_SIZE).hexdigest()


class _Unbound:
    """A global name the code loads that its module does not define (a builtin, or a typo)."""

    def __repr__(self) -> str:
        return "<unbound>"


_UNBOUND = _Unbound()


_NO_CYCLE = sys.maxsize  # the "lowest depth reached" of a walk that met no cycle


# ------------------------------------------------------------------------ where code lives


def _origin(module_name: str | None) -> str | None:
    """``None`` when the module is the user's code (hashed), else ``"dist==version"``.

    The user's code is ``__main__`` (a notebook's cells, a script) and any module that is
    neither in the standard library nor installed in a site-packages folder (a module
    beside the notebook, an editable install). evkit itself is seen by its version.
    """
    if module_name is None or module_name == "__main__" or module_name not in sys.modules:
        return None  # not cached: a module imported later may be installed code
    return _origin_of_imported(module_name)


@functools.cache
def _origin_of_imported(module_name: str) -> str | None:
    top = module_name.partition(".")[0]
    if top == "evkit":
        return _installed_version("evkit")
    if top in sys.builtin_module_names:
        return f"python=={sys.version.split()[0]}"
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if not isinstance(path, str):
        spec = getattr(module, "__spec__", None)
        if getattr(spec, "origin", None) in ("frozen", "built-in"):
            return f"python=={sys.version.split()[0]}"
        return None
    return _file_origin(path, top)


@functools.lru_cache(maxsize=4_096)
def _file_origin(path: str, top: str) -> str | None:
    # Only string work on the path: a run starts on the kernel's loop, where a file system
    # call (realpath's lstat, reading a distribution's metadata) would block it.
    parts = os.path.normpath(path).split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return _installed_version(top)
    if path.startswith(_STDLIB_PREFIXES):
        return f"python=={sys.version.split()[0]}"
    return None


_PYTHON_LIB = "python{}.{}".format(*sys.version_info[:2])
_STDLIB_PREFIXES = tuple(
    {
        os.path.join(os.path.normpath(prefix), "lib", _PYTHON_LIB) + os.sep
        for prefix in (sys.base_prefix, sys.base_exec_prefix)
    }
)


def _installed_version(top: str) -> str:
    # The version the package itself declares, as most do; metadata files are not read
    # (see _file_origin).
    return f"{top}=={getattr(sys.modules.get(top), '__version__', 'unknown')}"


def _module_of(value: object) -> str | None:
    module = getattr(value, "__module__", None)
    if isinstance(module, str):
        return module
    owner = getattr(value, "__self__", None)  # a builtin function: its module
    if isinstance(owner, types.ModuleType):
        return owner.__name__
    return None


def _origin_of(value: object) -> str | None:
    """``_origin`` of the module ``value`` was defined in.

    For a function whose module is not imported (its ``__module__`` names a public
    alias), the origin of its code's file.
    """
    module = _module_of(value)
    if module is not None and module != "__main__" and module not in sys.modules:
        code = getattr(value, "__code__", None)
        if isinstance(code, types.CodeType):
            return _file_origin(code.co_filename, module.partition(".")[0])
    return _origin(module)


def _external_name(value: object) -> str:
    module = _module_of(value) or type(value).__module__
    qualname = (
        getattr(value, "__qualname__", None) or getattr(value, "__name__", None) or type(value).__qualname__
    )
    return f"{module}.{qualname}@{_origin_of(value) or _origin(module) or 'no-code'}"


def _is_user_code(value: object) -> bool:
    return _origin_of(value) is None


# ----------------------------------------------------------------------- what code loads


_LOAD_GLOBAL = opcode.opmap["LOAD_GLOBAL"]
_EXTENDED_ARG = opcode.EXTENDED_ARG
_LOAD_GLOBAL_BYTE = bytes([_LOAD_GLOBAL])


_GLOBAL_NAMES: weakref.WeakKeyDictionary[types.CodeType, tuple[str, ...]] = weakref.WeakKeyDictionary()


def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """The global names ``code`` (and the code nested in it) loads, sorted.

    Read from the bytecode (a loop over its bytes, faster than ``dis``): ``co_names``
    also holds attribute names, and a later global of the same name is no change.
    Cached per code object, weakly: a redefined cell's old code is not kept alive.
    """
    names = _GLOBAL_NAMES.get(code)
    if names is None:
        names = _GLOBAL_NAMES[code] = _read_global_names(code)
    return names


def _read_global_names(code: types.CodeType) -> tuple[str, ...]:
    found: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        raw = current.co_code
        names = current.co_names
        # Instructions are 2 bytes, opcode then argument: find the opcode's byte (in C)
        # and keep the hits at even offsets, rather than loop over every instruction.
        at = raw.find(_LOAD_GLOBAL_BYTE)
        while at != -1:
            if not at % 2:
                arg, back, shift = raw[at + 1], at - 2, 8
                while back >= 0 and raw[back] == _EXTENDED_ARG:
                    arg |= raw[back + 1] << shift
                    back, shift = back - 2, shift + 8
                found.add(names[arg >> 1])  # from 3.11 on the argument is the name's index << 1
            at = raw.find(_LOAD_GLOBAL_BYTE, at + 1)
        stack += [c for c in current.co_consts if isinstance(c, types.CodeType)]
    return tuple(sorted(found))


def _feed_code(code: types.CodeType, feed: Callable[[bytes], None]) -> None:
    # Not co_filename, co_firstlineno or the line table: a notebook cell's file name
    # changes when the cell is edited anywhere, and a blank line moves every line number.
    feed(code.co_code)
    header = (
        code.co_name,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
    )
    feed(repr(header).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(const, feed)
        else:
            # Constants are plain values, tuples and frozensets of them; a frozenset's
            # order depends on str hashing, which differs between processes.
            # Constants are part of the code: hashed whole, however long.
            try:
                text = plain_text(const, [sys.maxsize], sys.maxsize)
            except TooBig:  # constants nested over MAX_NESTING deep
                text = repr(const)
            feed(text.encode("utf-8", "surrogatepass"))


# ------------------------------------------------------------------- walking the code


_CELL = object()  # the key of a dependency on a closure cell's contents


@dataclass(slots=True)
class _Entry:
    """A node's digest and what it was computed from, for the per-object cache."""

    digest: str
    # (holder, key, id of the value found): the digest holds while each key of each holder
    # still has the same object. ``holder`` is a namespace (a dict or a mappingproxy), a
    # closure cell (key _CELL) or a function (key: an attribute name).
    deps: tuple[tuple[object, object, int], ...]
    # No cycle met below: the digest is the same wherever the object is met. Else (a
    # member of a cycle) it is the digest of a walk that began at the object, and is used
    # only for a walk that begins there: met from another member, the cycle is cut
    # elsewhere and the digest differs.
    acyclic: bool


_CACHE: weakref.WeakKeyDictionary[object, _Entry] = weakref.WeakKeyDictionary()


def _lookup(holder: object, key: object) -> object:
    if key is _CELL:
        try:
            return holder.cell_contents  # type: ignore[attr-defined]
        except ValueError:  # an empty cell: the variable is not assigned yet
            return _UNBOUND
    if isinstance(key, str) and isinstance(holder, (dict, types.MappingProxyType)):
        return holder.get(key, _UNBOUND)
    return getattr(holder, cast("str", key), _UNBOUND)


def _still_valid(entry: _Entry) -> bool:
    for holder, key, expected in entry.deps:  # noqa: SIM110 - the hot path: a loop beats all(<genexpr>)
        if id(_lookup(holder, key)) != expected:
            return False
    return True


# Global objects other than code, read once per process: id -> (the object, or a weak
# reference to it, and what was read). A list or dict that a step appends to as it runs
# (a log, a counter) must not look like an edit on the next run; an edit is made by
# running the cell again, which binds the name to a new object.
_SEEN: dict[int, tuple[object, str]] = {}
_SEEN_LIMIT = 4_096


def _first_sight(value: object, read: Callable[[object], str]) -> str:
    """``read(value)`` the first time this object is met in the process, then the same.

    Only objects that can be weakly referenced, and small plain lists, dicts and sets
    (held strongly: they cannot be), are remembered; other objects are read each time.
    """
    found = _SEEN.get(id(value))
    if found is not None:
        holder, text = found
        if (holder() if isinstance(holder, weakref.ref) else holder) is value:
            return text
    text = read(value)
    holder = value
    try:
        holder = weakref.ref(value)
    except TypeError:  # a list, dict, set, int...: held only when it is small and plain
        if type(value) not in (list, dict, set) or text.startswith("data:"):
            return text
    if len(_SEEN) >= _SEEN_LIMIT:
        _SEEN.clear()  # objects met again are read again: never a missed edit
    _SEEN[id(value)] = (holder, text)
    return text


class _Walk:
    """One fingerprint computation: the nodes being visited, for the cycle guard."""

    __slots__ = ("depth_of", "nesting")

    def __init__(self) -> None:
        self.depth_of: dict[int, int] = {}
        self.nesting = 0  # how many non-plain containers the walk is inside

    def node(
        self,
        obj: object,
        depth: int,
        deps: list[tuple[object, object, int]],
    ) -> tuple[str, int]:
        """The digest of a user-defined function or class, and the lowest depth it reached.

        The depth is that of the highest node on the walk's stack that a cycle led back
        to, ``_NO_CYCLE`` when none. A node whose walk led back to no node above it has
        the digest a walk beginning at it would give, so it is cached.
        """
        entry = _CACHE.get(obj)
        if entry is not None and (entry.acyclic or depth == 0) and _still_valid(entry):
            deps += entry.deps
            return entry.digest, _NO_CYCLE
        own_deps: list[tuple[object, object, int]] = []
        self.depth_of[id(obj)] = depth
        try:
            if isinstance(obj, type):
                digest, low = self._class(obj, depth, own_deps)
            else:
                digest, low = self._function(obj, depth, own_deps)  # type: ignore[arg-type]
        finally:
            del self.depth_of[id(obj)]
        if low >= depth:
            with contextlib.suppress(TypeError):  # an object that cannot be weakly referenced
                _CACHE[obj] = _Entry(digest, tuple(own_deps), acyclic=low == _NO_CYCLE)
        deps += own_deps
        return digest, low

    def _function(
        self,
        func: types.FunctionType,
        depth: int,
        deps: list[tuple[object, object, int]],
    ) -> tuple[str, int]:
        hasher = _hasher()
        feed = hasher.update
        code = func.__code__
        for attribute in ("__code__", "__defaults__", "__kwdefaults__"):
            deps.append((func, attribute, id(getattr(func, attribute))))
        feed(b"function\0")
        _feed_code(code, feed)
        low = _NO_CYCLE
        for label, value in (("defaults", func.__defaults__), ("kwdefaults", func.__kwdefaults__)):
            text, reached = self.ref(value, depth, deps)
            low = min(low, reached)
            feed(f"\0{label}={text}".encode("utf-8", "surrogatepass"))
        for name, cell in zip(code.co_freevars, func.__closure__ or (), strict=True):
            contents = _lookup(cell, _CELL)
            deps.append((cell, _CELL, id(contents)))
            text, reached = self.ref(contents, depth, deps)
            low = min(low, reached)
            feed(f"\0closure {name}={text}".encode("utf-8", "surrogatepass"))
        namespace = func.__globals__
        for name in _global_names(code):
            value = namespace.get(name, _UNBOUND)
            deps.append((namespace, name, id(value)))
            if value is _UNBOUND:
                continue  # a builtin: its name is in co_names already
            text, reached = self.ref(value, depth, deps)
            low = min(low, reached)
            feed(f"\0global {name}={text}".encode("utf-8", "surrogatepass"))
            if isinstance(value, types.ModuleType) and _origin(value.__name__) is None:
                # A module of the user's: what the code reaches through it (helpers.clean)
                # counts, as a name imported from it would.
                text, reached = self._module_attributes(value, code, depth, deps)
                low = min(low, reached)
                feed(text.encode("utf-8", "surrogatepass"))
        return hasher.hexdigest(), low

    def _module_attributes(
        self,
        module: types.ModuleType,
        code: types.CodeType,
        depth: int,
        deps: list[tuple[object, object, int]],
    ) -> tuple[str, int]:
        namespace = vars(module)
        parts = []
        low = _NO_CYCLE
        for name in _all_names(code):
            value = namespace.get(name, _UNBOUND)
            if not isinstance(value, _CODE_LIKE) or getattr(value, "__module__", None) != module.__name__:
                continue
            deps.append((namespace, name, id(value)))
            text, reached = self.ref(value, depth, deps)
            low = min(low, reached)
            parts.append(f"\0{module.__name__}.{name}={text}")
        return "".join(parts), low

    def _class(self, cls: type, depth: int, deps: list[tuple[object, object, int]]) -> tuple[str, int]:
        hasher = _hasher()
        feed = hasher.update
        feed(f"class {cls.__qualname__}\0".encode())
        low = _NO_CYCLE
        for base in cls.__bases__:
            text, reached = self.ref(base, depth, deps)
            low = min(low, reached)
            feed(f"base={text}\0".encode("utf-8", "surrogatepass"))
        namespace = cls.__dict__
        for name, value in namespace.items():
            if name in _CLASS_NOISE:
                continue
            deps.append((namespace, name, id(value)))
            if isinstance(value, (staticmethod, classmethod)):
                inner: object = value.__func__
                label = type(value).__name__
            elif isinstance(value, property):
                inner = (value.fget, value.fset, value.fdel)
                label = "property"
            else:
                inner, label = value, ""
            text, reached = self.ref(inner, depth, deps)
            low = min(low, reached)
            feed(f"{name}={label}{text}\0".encode("utf-8", "surrogatepass"))
        return hasher.hexdigest(), low

    def ref(
        self,
        value: object,
        depth: int,
        deps: list[tuple[object, object, int]],
    ) -> tuple[str, int]:
        """The text that stands for ``value`` in a digest, and the lowest depth it reached."""
        kind = type(value)
        if kind in SCALARS:
            try:
                return plain_text(value, [1]), _NO_CYCLE
            except TooBig:
                return cheap_check(value), _NO_CYCLE
        if kind is types.FunctionType or isinstance(value, type):
            if not _is_user_code(value):
                return "ext:" + _external_name(value), _NO_CYCLE
            seen = self.depth_of.get(id(value))
            if seen is not None:  # a cycle: name it; its digest is being computed above
                return f"cycle:{getattr(value, '__qualname__', '?')}", seen
            if depth >= MAX_HELPER_DEPTH:
                # Context-dependent (how deep depends on where the walk began): reported
                # as a cycle through the root, so only the root's digest is cached.
                return f"deep:{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}", 0
            digest, low = self.node(value, depth + 1, deps)
            return "code:" + digest, low
        if isinstance(value, _NO_CODE_CALLABLES):
            return "ext:" + _external_name(value), _NO_CYCLE
        if kind is types.MethodType:
            text, low = self.ref(value.__func__, depth, deps)  # type: ignore[attr-defined]
            owner = value.__self__  # type: ignore[attr-defined]
            if isinstance(owner, type):  # a classmethod bound to its class
                bound, reached = self.ref(owner, depth, deps)
                low = min(low, reached)
            else:
                bound = _first_sight(owner, cheap_check)
            return f"method:{text} of {bound}", low
        if kind is functools.partial:
            low = _NO_CYCLE
            parts = []
            for part in (value.func, value.args, value.keywords):  # type: ignore[attr-defined]
                text, reached = self.ref(part, depth, deps)
                low = min(low, reached)
                parts.append(text)
            return "partial(" + ",".join(parts) + ")", low
        if kind is types.ModuleType:
            return "module:" + value.__name__, _NO_CYCLE  # type: ignore[attr-defined]
        wrapped = _attribute(value, "__wrapped__") if callable(value) else None
        if callable(wrapped) and wrapped is not value:  # a @workflow.step function, or another wrapper
            text, low = self.ref(wrapped, depth, deps)
            return "wrapped:" + text, low
        if kind in (tuple, list, dict, set, frozenset):
            return self._container(value, depth, deps)
        if callable(value) and isinstance(_attribute(value, "__name__"), str) and not _is_user_code(kind):
            # A callable object of an installed package (a numpy ufunc): by name.
            return "ext:" + _external_name(value), _NO_CYCLE
        if _is_user_code(kind):  # an instance of the user's class: its class's code counts too
            text, low = self.ref(kind, depth, deps)
            return f"{_first_sight(value, cheap_check)} of {text}", low
        return _first_sight(value, cheap_check), _NO_CYCLE

    def _container(
        self,
        value: object,
        depth: int,
        deps: list[tuple[object, object, int]],
    ) -> tuple[str, int]:
        if type(value) in (list, dict, set):  # mutable: read when first met
            text = _first_sight(value, _plain_or_data)
            if not text.startswith("data:"):
                return text, _NO_CYCLE
        else:
            try:
                return plain_text(value, [SMALL_ITEMS]), _NO_CYCLE
            except (TooBig, RecursionError):
                pass
        # Not plain: functions in a tuple, a registry dict of handlers... Small ones are
        # walked item by item, whenever the function is (their functions may have
        # changed); big ones are data.
        try:
            size = len(value)  # type: ignore[arg-type]
        except TypeError:  # pragma: no cover - every container type above has a len
            size = SMALL_ITEMS + 1
        if size > SMALL_ITEMS or self.nesting >= MAX_NESTING:
            return cheap_check(value), _NO_CYCLE
        low = _NO_CYCLE
        items = list(value.items()) if isinstance(value, dict) else cast("Iterable[object]", value)
        parts = []
        self.nesting += 1
        try:
            for item in items:
                text, reached = self.ref(item, depth, deps)
                low = min(low, reached)
                parts.append(text)
        finally:
            self.nesting -= 1
        if isinstance(value, (set, frozenset)):
            parts.sort()
        return f"{type(value).__name__}(" + ",".join(parts) + ")", low


def _plain_or_data(value: object) -> str:
    # "data:..." (what cheap_check starts with) when the value is not small and plain.
    try:
        return plain_text(value, [SMALL_ITEMS])
    except (TooBig, RecursionError):
        return "data:not plain"


def _attribute(value: object, name: str) -> object:
    try:
        return getattr(value, name, None)
    except Exception:  # a proxy's __getattr__ may raise anything
        return None


def _all_names(code: types.CodeType) -> tuple[str, ...]:
    names: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        names.update(current.co_names)
        stack += [c for c in current.co_consts if isinstance(c, types.CodeType)]
    return tuple(sorted(names))


# ------------------------------------------------------------------------- public API


def function_fingerprint(func: Callable[..., object]) -> str:
    """The digest of the code ``func`` runs: a new one when what it runs changes.

    Sees the function's code object (bytecode, constants, names, nested code), its
    defaults and keyword defaults, its closure's values, and what it loads by global
    name: the user's functions and classes (hashed the same way, recursively), installed
    functions and classes (by qualified name and their package's version), modules (by
    name), small constants (by value) and data (by a cheap check). ``func`` may also be a
    ``@workflow.step`` function (its function is used), a class (an event listener), a
    ``functools.partial`` or a bound method. Re-defining a function with the same source
    gives the same digest, in a new process too. Cached per object: calling it again for
    the same function only checks that the names it depends on still hold the same objects.

    Args:
        func: The step's function, or any callable.

    Returns:
        A hex digest of 32 characters.
    """
    kind = type(func)
    if kind is not types.FunctionType and not isinstance(func, type):
        wrapped = _attribute(func, "__wrapped__")  # a @workflow.step function: its function
        if callable(wrapped) and wrapped is not func:
            return function_fingerprint(wrapped)
    if kind is types.FunctionType or isinstance(func, type):
        entry = _CACHE.get(func)
        if entry is not None and _still_valid(entry):
            return entry.digest
        if _is_user_code(func):
            return _Walk().node(func, 0, [])[0]
    text, _ = _Walk().ref(func, 0, [])
    return _digest(text)


step_code_fingerprint = function_fingerprint
"""The code digest of a step: pass a ``@workflow.step`` function, a plain function or an
event step's listener class (see :func:`function_fingerprint`)."""


def value_fingerprint(value: object, *, substitute: Callable[[object], str | None] | None = None) -> str:
    """The digest of a literal argument: its whole value, the same in every process.

    Plain values (None, bool, int, float, complex, str, bytes, and tuples, lists, dicts
    and sets of them) are digested from a canonical text, with no pickling; sets are
    sorted, so their digest does not depend on the process's str hashing. A function or
    class is digested as :func:`function_fingerprint` does. Anything else by its pickled
    bytes, or, if it cannot be pickled, by the cheap check used for global data; inside
    a tuple, list, dict or set, item by item.

    Args:
        value: A literal argument of a step.
        substitute: Called with ``value`` and with each item inside it that is not a
            plain value; when it returns a string, that string stands for the item. A
            re-run passes one that returns the fingerprint of the upstream step a ``Ref``
            names, so a step's inputs change when an upstream step's fingerprint does,
            wherever the reference sits (``total.step([a.step(), b.step()])``).

    Returns:
        A hex digest of 32 characters.
    """
    kind = type(value)
    if kind in SCALARS:
        if kind is str:
            return _digest("str:" + value)  # type: ignore[operator]
        if kind is bytes:
            return hashlib.blake2b(b"bytes:" + value, digest_size=DIGEST_SIZE).hexdigest()  # type: ignore[operator]
        return _digest(repr(value))
    try:
        return _digest(plain_text(value, [ARGUMENT_ITEMS], sys.maxsize))
    except (TooBig, RecursionError):
        pass
    try:
        return _digest(_argument_text(value, substitute, 0))
    except RecursionError:  # deeper than MAX_NESTING containers of objects: as one object
        return _digest(_leaf_text(value))


def _argument_text(value: object, substitute: Callable[[object], str | None] | None, nesting: int) -> str:
    kind = type(value)
    if kind in SCALARS:
        return plain_text(value, [1], sys.maxsize)
    if substitute is not None:
        found = substitute(value)
        if found is not None:
            return f"substitute({found})"
    if nesting > MAX_NESTING or kind not in (tuple, list, dict, set, frozenset):
        return _leaf_text(value)
    if kind is dict:
        pairs = cast("dict[object, object]", value).items()
        texts = [
            f"{_argument_text(k, substitute, nesting + 1)}:{_argument_text(v, substitute, nesting + 1)}"
            for k, v in pairs
        ]
    else:
        texts = [_argument_text(v, substitute, nesting + 1) for v in cast("Iterable[object]", value)]
        if kind is set or kind is frozenset:
            texts.sort()
    return f"{kind.__name__}(" + ",".join(texts) + ")"


def _leaf_text(value: object) -> str:
    if type(value) is types.FunctionType or isinstance(
        value, (type, functools.partial, types.MethodType, *_NO_CODE_CALLABLES)
    ):
        return "code:" + function_fingerprint(value)
    try:
        blob = codec.dumps(value)
    except TypeError:
        return cheap_check(value)
    return "pickle:" + hashlib.blake2b(blob, digest_size=DIGEST_SIZE).hexdigest()


def combine(parts: Iterable[str]) -> str:
    """One digest for several: a step's code digest followed by its inputs' digests.

    Args:
        parts: Digests (or any strings), in an order that means something.

    Returns:
        A hex digest of 32 characters.
    """
    hasher = _hasher()
    for part in parts:
        hasher.update(part.encode())
        hasher.update(b"\0")
    return hasher.hexdigest()


@final
class Fingerprinter:
    """Fingerprints for one comparison: each function and listener class digested once.

    Use one for all the steps of a DAG (a 100,000-step fan-out of one function then costs
    one fingerprint and 100,000 dictionary look-ups). It assumes nothing is redefined
    while it is in use; make a new one for the next comparison.
    """

    __slots__ = ("_codes",)

    def __init__(self) -> None:
        # id -> (the object, its digest): the object is held so its id is not reused.
        self._codes: dict[int, tuple[object, str]] = {}

    def code(self, target: Callable[..., object]) -> str:
        """The code digest of a step function, a ``@workflow.step`` or a listener class.

        Args:
            target: What :func:`function_fingerprint` takes.

        Returns:
            The digest :func:`function_fingerprint` gives.
        """
        found = self._codes.get(id(target))
        if found is not None:
            return found[1]
        digest = function_fingerprint(target)
        self._codes[id(target)] = (target, digest)
        return digest
