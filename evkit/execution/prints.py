"""Step fingerprints of a DAG, and the small record of them the store keeps with a run.

A run stores, beside its DAG, only what cannot be read from the DAG later: the code
digest of each distinct function (a handful, whatever the DAG's size) and the digest of
each literal argument that is not a plain scalar. A re-run derives the stored side's
step fingerprints from the stored DAG and those digests, and does not digest stored code
(a stored function may see other globals than it did when the run started) unless the
record is missing. Pure: it reads no store; ``evkit.execution.plan`` compares what this
module computes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

from evkit import codec
from evkit.dag import FlatDag, FlatStep, Ref
from evkit.fingerprint import DIGEST_SIZE, combine, function_fingerprint, value_fingerprint
from evkit.gcscope import BIG_RUN_STEPS, fewer_gc_passes

StepPrint = tuple[str, str]
"""A step's ``(code digest, fingerprint)``: the fingerprint covers the code and the inputs."""

# Every event step has this fingerprint: what its downstream steps take from it is the
# checkpointed event, which a change of listener or arguments does not change (only a
# repoll does, and the plan propagates that itself).
EVENT_PRINT: StepPrint = ("", combine(["event step"]))
_ATOMS = frozenset({str, int, float, bool, bytes, type(None)})
# The stored record: a tuple of plain values (no evkit class is pickled by name, so a
# later evkit reads it whatever its modules are called).
_FORMAT = "evkit step codes"
_FORMAT_VERSION = 1


class StoredCodesMismatch(ValueError):
    """The stored code digests do not fit the stored DAG's functions (never expected)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DagCodes:
    """What a DAG's step fingerprints need from the moment its run is started.

    Computed at the user's call (``dag_codes``), when the code the user means is the one
    their names hold, and stored with the run (``encode_codes``).

    Attributes:
        codes: The code digest of each distinct function of the DAG's function steps, in
            the order of the steps that first use each.
        arguments: For each step with an argument that is neither a plain scalar nor a
            reference to a step (a list, an object, a function), the text of its
            arguments: such a value may hold code, or pickle differently once stored.
    """

    codes: tuple[str, ...]
    arguments: Mapping[str, str] = field(default_factory=dict)


def dag_codes(dag: FlatDag) -> DagCodes:
    """The code digests and argument digests of ``dag`` (see :class:`DagCodes`).

    This is all a first run pays for fingerprints: one digest per distinct function and
    a type check per argument; each step's fingerprint is derived only when a re-run
    compares the DAG with a stored one (:func:`step_prints`).
    """
    codes: dict[int, str] = {}
    arguments: dict[str, str] = {}
    atoms = _ATOMS
    for step in dag.steps:
        func = step.func
        if func is None or step.kind == "event":
            continue
        if id(func) not in codes:
            codes[id(func)] = function_fingerprint(func)
        for value in step.args:  # inline: a big DAG pays this per step
            kind = type(value)
            if kind is not Ref and kind not in atoms:
                arguments[step.step_id] = _arguments_text(step)
                break
        else:
            if step.kwargs and any(type(v) is not Ref and type(v) not in atoms for v in step.kwargs.values()):
                arguments[step.step_id] = _arguments_text(step)
    return DagCodes(codes=tuple(codes.values()), arguments=arguments)


def step_prints(dag: FlatDag, codes: DagCodes) -> dict[str, StepPrint]:
    """Each step's ``(code digest, fingerprint)``, by step id, from ``codes`` (no code is digested).

    The fingerprint covers the step's own inputs: the option that changes its result
    (``catch_exceptions``) and its arguments, where an upstream step stands by its id.
    Its upstream steps' changes are not in it: ``make_plan`` runs again everything
    downstream of a step that runs again. Both sides of a comparison are computed in the
    same process, so nothing is hashed per step.

    Raises:
        StoredCodesMismatch: ``codes`` has more or fewer digests than ``dag`` has
            functions (the stored record does not belong to the stored DAG).
    """
    code_of = _codes_by_function(dag, codes)
    arguments = codes.arguments
    atoms = _ATOMS
    heads = ("raise\0", "catch\0")
    prints: dict[str, StepPrint] = {}
    with fewer_gc_passes(len(dag.steps) >= BIG_RUN_STEPS):  # each pass would walk the whole DAG
        for step in dag.steps:
            func = step.func
            if func is None or step.kind == "event":
                prints[step.step_id] = EVENT_PRINT
                continue
            text = arguments.get(step.step_id) if arguments else None
            if text is None:
                args = step.args
                value = args[0] if len(args) == 1 and not step.kwargs else None
                kind = type(value)
                # One argument, a step or a plain scalar: the usual step of a big DAG, inline.
                if kind is Ref:
                    text = "@" + cast("Ref", value).step_id
                elif value is not None and kind in atoms:
                    text = f"{kind.__name__}:{value!r}"
                else:
                    text = _arguments_text(step)
            prints[step.step_id] = (code_of[id(func)], heads[step.options.catch_exceptions] + text)
    return prints


def chained_prints(dag: FlatDag, codes: DagCodes) -> dict[str, StepPrint]:
    """Each step's fingerprints as stores written before this record kept them.

    Those stores hold each step's fingerprints, each a digest that also covers its
    upstream steps' fingerprints; a DAG compared with such a store is fingerprinted the
    same way (from ``codes``: no code is digested here either).

    Raises:
        StoredCodesMismatch: ``codes`` does not fit ``dag``'s functions.
    """
    code_of = _codes_by_function(dag, codes)
    arguments = codes.arguments
    prints: dict[str, StepPrint] = {}
    for step in dag.steps:
        func = step.func
        if func is None or step.kind == "event":
            prints[step.step_id] = EVENT_PRINT
            continue
        code = code_of[id(func)]
        parts = [code + ("\0catch" if step.options.catch_exceptions else "\0raise")]
        if step.args or step.kwargs:
            text = arguments.get(step.step_id)
            parts.append(_arguments_text(step) if text is None else text)
        for up in step.upstream:
            parts.append(prints[up][1])
        prints[step.step_id] = (code, combine(("\0".join(parts),)))
    return prints


def fingerprint_dag(dag: FlatDag) -> dict[str, StepPrint]:
    """Each step's fingerprints, digesting its code now (see :func:`step_prints`)."""
    return step_prints(dag, dag_codes(dag))


def _codes_by_function(dag: FlatDag, codes: DagCodes) -> dict[int, str]:
    # The stored DAG was pickled as one object, so steps that shared a function share one
    # unpickled object, and distinct functions stay distinct: the first appearances line
    # up with the stored digests. A count that differs means they do not.
    found: dict[int, str] = {}
    digests = iter(codes.codes)
    for step in dag.steps:
        func = step.func
        if func is None or step.kind == "event" or id(func) in found:
            continue
        digest = next(digests, None)
        if digest is None:
            raise StoredCodesMismatch(f"{len(codes.codes)} code digests for more functions")
        found[id(func)] = digest
    if next(digests, None) is not None:
        raise StoredCodesMismatch(f"{len(codes.codes)} code digests for {len(found)} functions")
    return found


def _arguments_text(step: FlatStep) -> str:
    parts = []
    for value in step.args:
        kind = type(value)
        if kind is Ref:
            parts.append("@" + cast("Ref", value).step_id)
        elif kind in _ATOMS:
            parts.append(f"{kind.__name__}:{value!r}")
        else:
            parts.append(_argument_part(value))
    if step.kwargs:
        parts += [f"{name}={_argument_part(value)}" for name, value in step.kwargs.items()]
    return "\0".join(parts)


def _argument_part(value: object) -> str:
    # Plain values by their repr (exact for these types, and much cheaper than a pickle);
    # a Ref by the id it stands for.
    kind = type(value)
    if kind is Ref:
        return "@" + cast("Ref", value).step_id
    if kind in _ATOMS:
        return f"{kind.__name__}:{value!r}"
    try:
        return value_fingerprint(value)
    except TypeError:
        # It cannot be pickled, so the run cannot be stored either: registering it fails
        # with the message that says so (any digest will do until then).
        return f"unpicklable {kind.__qualname__}"


# ------------------------------------------------------------------ the stored record


def encode_codes(codes: DagCodes) -> bytes:
    """The record the store keeps with a run's definition (``fingerprints_blob``)."""
    packed = b"".join(bytes.fromhex(digest) for digest in codes.codes)
    return codec.dumps((_FORMAT, _FORMAT_VERSION, packed, dict(codes.arguments)))


def decode_record(blob: bytes) -> DagCodes | dict[str, StepPrint]:
    """What ``encode_codes`` wrote, or each step's fingerprints from a store written before it.

    Raises:
        ValueError: ``blob`` is neither (a record of a later evkit).
    """
    loaded = codec.loads(blob)
    if isinstance(loaded, dict):  # the form written until this record: every step's prints
        return cast("dict[str, StepPrint]", loaded)
    if (
        isinstance(loaded, tuple)
        and len(loaded) == 4
        and loaded[0] == _FORMAT
        and loaded[1] == _FORMAT_VERSION
    ):
        packed = cast("bytes", loaded[2])
        digests = tuple(packed[i : i + DIGEST_SIZE].hex() for i in range(0, len(packed), DIGEST_SIZE))
        return DagCodes(codes=digests, arguments=cast("dict[str, str]", loaded[3]))
    raise ValueError(f"an unknown fingerprint record: {type(loaded).__qualname__}")


def live_and_stored_prints(
    dag: FlatDag,
    codes: DagCodes,
    record: bytes | None,
    load_stored_dag: Callable[[], FlatDag | None],
) -> tuple[dict[str, StepPrint], dict[str, StepPrint]]:
    """The fingerprints of ``dag`` and of a stored run, computed so that they compare.

    Args:
        dag: The DAG to run now.
        codes: Its :class:`DagCodes`, from when its run was started.
        record: The stored run's ``fingerprints_blob`` (``None`` in a store written
            before fingerprints were kept).
        load_stored_dag: Loads the stored run's DAG (``None`` when its code is gone).

    Returns:
        ``(prints of dag, prints of the stored run)``.

    Raises:
        ValueError: ``record`` is not a record this evkit wrote.
    """
    decoded = decode_record(record) if record is not None else None
    if isinstance(decoded, dict):
        return chained_prints(dag, codes), decoded
    live = step_prints(dag, codes)
    stored_dag = load_stored_dag()
    if stored_dag is None:
        return live, {}  # its code is gone: every function step counts as added
    return live, _stored_side(decoded, stored_dag)


def stored_prints(record: bytes | None, stored_dag: FlatDag) -> dict[str, StepPrint]:
    """The fingerprints of a stored run, from its record and its DAG.

    What a fork of the stored DAG compares with itself.

    Raises:
        ValueError: ``record`` is not a record this evkit wrote.
    """
    return _stored_side(decode_record(record) if record is not None else None, stored_dag)


def _stored_side(
    decoded: DagCodes | dict[str, StepPrint] | None, stored_dag: FlatDag
) -> dict[str, StepPrint]:
    if isinstance(decoded, dict):
        return decoded
    if decoded is not None:
        try:
            return step_prints(stored_dag, decoded)
        except StoredCodesMismatch:
            pass
    # No record (a store from before re-runs), or one that does not fit its DAG (this
    # should never happen): the stored code is digested now. A function pickled by
    # reference then gives the current code's digest, so a change to it is not seen; a
    # notebook's functions are pickled by value.
    return fingerprint_dag(stored_dag)
