"""The exception tree: its docstring drawing, fields, pickling, and errors kept in the store."""

from __future__ import annotations

import pathlib
import pickle
import re
import threading
from typing import ClassVar

import pytest

import evkit
from evkit import codec, errors
from evkit.execution import failure_blob, failure_from_store

ERROR_CLASSES = sorted(
    (
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.EvkitError)
    ),
    key=lambda cls: cls.__name__,
)


def _drawn_tree() -> dict[str, tuple[str | None, str]]:
    """Each class drawn in errors.py's docstring: its drawn parent and its note."""
    drawn: dict[str, tuple[str | None, str]] = {}
    parents: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        found = re.fullmatch(r" {4}((?:[│ ] {3})*)(?:[├└]── )?([A-Z]\w+Error)\s*(?:\((.*)\))?", line)
        if found is None:
            continue
        prefix, name, note = found.groups()
        depth = len(prefix) // 4 + (1 if "──" in line else 0)
        del parents[depth:]
        drawn[name] = (parents[-1] if parents else None, note or "")
        parents.append(name)
    return drawn


def test_the_docstring_tree_draws_every_error_class_under_its_parent() -> None:
    drawn = _drawn_tree()
    assert sorted(drawn) == [cls.__name__ for cls in ERROR_CLASSES]
    for cls in ERROR_CLASSES:
        parent, note = drawn[cls.__name__]
        evkit_bases = [base.__name__ for base in cls.__bases__ if issubclass(base, errors.EvkitError)]
        assert evkit_bases == ([parent] if parent else []), cls.__name__
        other_bases = [base.__name__ for base in cls.__bases__ if not issubclass(base, errors.EvkitError)]
        drawn_also = re.findall(r"also (\w+)", note)
        assert other_bases == (drawn_also or ["Exception"] * (parent is None)), cls.__name__


def test_the_tree_reader_sees_depth_and_notes() -> None:
    drawn = _drawn_tree()
    assert drawn["EvkitError"] == (None, "")
    assert drawn["StepFailedError"] == (
        "WorkflowExecutionError",
        "field step; raised live and from the store",
    )
    assert drawn["NotAStoreError"] == ("StoreError", "not an evkit store, or corrupt")
    assert drawn["WorkflowStillActiveError"][0] == "RunStateError"


def test_every_error_class_without_subclasses_is_raised_somewhere_in_evkit() -> None:
    # A leaf class nobody constructs is a promise the code does not keep (an export that
    # callers would catch in vain).
    package = pathlib.Path(errors.__file__).parent
    source = "\n".join(
        path.read_text(encoding="utf-8") for path in package.rglob("*.py") if path.name != "errors.py"
    )
    constructed = set(re.findall(r"\b([A-Z]\w+Error)\(", source))
    leaves = {cls.__name__ for cls in ERROR_CLASSES if not cls.__subclasses__()}
    assert leaves - constructed == set()


def test_the_exported_errors_are_the_tree_minus_the_internal_executor_bases() -> None:
    exported = {name for name in evkit.__all__ if name.endswith("Error")}
    assert exported == {cls.__name__ for cls in ERROR_CLASSES} - {"ExecutorError", "RemoteStepError"}
    assert not hasattr(evkit, "CheckpointConflictError")
    assert not hasattr(errors, "CheckpointConflictError")


def test_fields_are_declared_per_class_and_inherited() -> None:
    assert errors.EvkitError._field_defaults == {}
    assert errors.WorkflowDefinitionError._field_defaults == {"workflow_id": None}
    assert errors.StepFailedError._field_defaults == {"workflow_id": None, "step": None}
    assert errors.EventTimeoutError._field_defaults == {
        "workflow_id": None,
        "step": None,
        "timeout_seconds": None,
    }
    assert errors.NotAStoreError._field_defaults == {"path": None}
    assert errors.WorkerLostError._field_defaults == {}


def test_fields_not_given_take_their_defaults_and_show_in_the_instance() -> None:
    error = errors.StepFailedError("Step 's' failed", workflow_id="w")
    assert error.__dict__ == {"workflow_id": "w", "step": None}
    assert error.args == ("Step 's' failed",)
    assert str(error) == "Step 's' failed"


def test_an_unknown_field_is_refused_with_the_fields_the_class_has() -> None:
    with pytest.raises(
        TypeError,
        match=r"^StepFailedError\(\) got unknown field\(s\) 'stp'. Its fields: 'step', 'workflow_id'.$",
    ):
        errors.StepFailedError("m", stp="s")
    with pytest.raises(
        TypeError, match=r"^WorkerLostError\(\) got unknown field\(s\) 'a', 'b'. Its fields: none.$"
    ):
        errors.WorkerLostError("m", b=1, a=2)


class _NeedsKey(errors.StoreError):
    """A test error with a required field, a defaulted one and a class variable."""

    key: str
    retries: int = 3
    label: ClassVar[str] = "not a field"


def test_a_new_error_is_a_class_with_fields_and_a_required_field_must_be_given() -> None:
    assert _NeedsKey._field_defaults == {"path": None, "key": errors._REQUIRED, "retries": 3}
    with pytest.raises(TypeError, match=r"^_NeedsKey\(\) needs the field `key`.$"):
        _NeedsKey("m")
    error = _NeedsKey("m", key="k", path="/s.duckdb")
    assert error.__dict__ == {"path": "/s.duckdb", "key": "k", "retries": 3}
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.args, copy.__dict__) == (_NeedsKey, ("m",), error.__dict__)


def _sample(cls: type[errors.EvkitError]) -> errors.EvkitError:
    """An instance with every field set to a value other than its default."""
    values = {
        "workflow_id": "run-7",
        "step": "load",
        "timeout_seconds": 2.5,
        "path": "/data/s.duckdb",
        "pid": 4242,
        "host": "build-7",
        "key": "approve",
        "errors": (("amount", "Field required"),),
    }
    assert set(cls._field_defaults) <= set(values), f"add a sample value for {cls.__name__}'s fields"
    return cls(f"{cls.__name__} about 'run-7'", **{name: values[name] for name in cls._field_defaults})


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_pickles_with_its_message_and_fields(cls: type[errors.EvkitError]) -> None:
    error = _sample(cls)
    for copy in (pickle.loads(pickle.dumps(error)), codec.loads(codec.dumps(error))):
        assert type(copy) is cls
        assert copy.args == error.args
        assert str(copy) == str(error) == f"{cls.__name__} about 'run-7'"
        assert copy.__dict__ == error.__dict__
        assert copy.__dict__ == {name: getattr(error, name) for name in cls._field_defaults}


def test_the_ray_compatible_and_builtin_bases_still_catch() -> None:
    assert issubclass(errors.StepFailedError, errors.WorkflowExecutionError)
    assert issubclass(errors.ClusterConnectionError, ConnectionError)
    assert issubclass(errors.WorkflowNotFoundError, KeyError)
    assert (
        str(errors.WorkflowNotFoundError("Run 'w' is not in store", workflow_id="w"))
        == "Run 'w' is not in store"
    )
    assert isinstance(pickle.loads(pickle.dumps(errors.ClusterConnectionError("no"))), OSError)


class _Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("locked")
        self.lock = threading.Lock()


def _failed(cause: BaseException) -> errors.StepFailedError:
    error = errors.StepFailedError(
        "Step 's' of run 'w' failed after 1 attempt(s): ...", workflow_id="w", step="s"
    )
    error.__cause__ = cause
    return error


def test_a_stored_failure_is_the_live_error_with_its_cause() -> None:
    live = _failed(ValueError("bad"))
    stored = failure_from_store("w", failure_blob(live), "StepFailedError: ...")
    assert (type(stored), stored.args, stored.__dict__) == (type(live), live.args, live.__dict__)
    assert type(stored.__cause__) is ValueError
    assert stored.__cause__.args == ("bad",)


def test_a_stored_failure_whose_cause_cannot_be_pickled_keeps_the_error() -> None:
    live = _failed(_Unpicklable())
    stored = failure_from_store("w", failure_blob(live), "StepFailedError: ...")
    assert (type(stored), stored.args, stored.__dict__) == (type(live), live.args, live.__dict__)
    assert stored.__cause__ is None


def test_a_stored_failure_whose_cause_cannot_be_loaded_keeps_the_error() -> None:
    live = _failed(ValueError("bad"))
    error_blob, _ = codec.loads(failure_blob(live))  # as stored: the error without its chain
    blob = codec.dumps((error_blob, b"not a pickle"))
    stored = failure_from_store("w", blob, "StepFailedError: ...")
    assert (stored.args, stored.__dict__, stored.__cause__) == (live.args, live.__dict__, None)


def test_a_failure_stored_by_an_older_evkit_is_rebuilt_from_its_text() -> None:
    # Before the pair format, the blob held the step's exception alone.
    stored = failure_from_store("w", codec.dumps(KeyError("k")), "StepFailedError: Step 's' failed")
    assert type(stored) is errors.StepFailedError
    assert str(stored) == "Run 'w' failed: StepFailedError: Step 's' failed"
    assert stored.__dict__ == {"workflow_id": "w", "step": None}
    assert type(stored.__cause__) is KeyError
    bare = failure_from_store("w", None, "StepFailedError: Step 's' failed")
    assert (str(bare), bare.__cause__) == ("Run 'w' failed: StepFailedError: Step 's' failed", None)
