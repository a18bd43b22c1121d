"""What in a stored DAG cannot be imported any more, and which steps use it.

Used only after loading a run's DAG failed, to tell the user which module or name is gone
and which steps need it. It unpickles the blob again with a placeholder for every global
that cannot be found (slow, but only on that error path). It knows the DAG's pickle format
by name only (``evkit.dag._flat_dag_blob``): it imports nothing of ``evkit.dag``.
"""

from __future__ import annotations

import importlib
import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, final


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class MissingCode:
    """A module or name a stored DAG refers to that cannot be imported now."""

    module: str
    name: str | None  # None: the module itself is missing
    error: str  # the ImportError's or AttributeError's text
    steps: tuple[str, ...]  # ids of steps whose function or listener it is


def find_missing_code(blob: bytes) -> list[MissingCode]:
    """What in a stored DAG blob cannot be imported, and which steps use it.

    Used only after loading the blob failed (slow: it unpickles again, standing in a
    placeholder for every global that cannot be found).
    """
    missing: dict[tuple[str, str | None], type[_Missing]] = {}
    rows: list[tuple[Any, ...]] = []

    def load_rows(inner: bytes, big: bool) -> None:
        loaded = _TolerantUnpickler(io.BytesIO(inner), missing).load()
        rows.extend(loaded[0])

    _TolerantUnpickler(io.BytesIO(blob), missing, on_flat_dag=load_rows).load()
    found = []
    for (module, name), placeholder in missing.items():
        steps = tuple(row[0] for row in rows if placeholder in (row[3], row[4]))
        found.append(MissingCode(module=module, name=name, error=placeholder.error, steps=steps))
    return found


def load_rows_with_placeholders(blob: bytes) -> tuple[list[tuple[Any, ...]], str] | None:
    """A stored DAG's rows and output step, a placeholder standing for each global that is gone.

    For comparing a re-run with a run whose code cannot be imported any more: the steps
    that used one missing function share its placeholder, as they shared the function.
    Build the DAG with ``evkit.dag.flat_dag_from_rows``. ``None`` for a blob in a form
    older than the rows (nothing to compare then).
    """
    missing: dict[tuple[str, str | None], type[_Missing]] = {}
    loaded: list[tuple[list[tuple[Any, ...]], str]] = []

    def load_rows(inner: bytes, big: bool) -> None:
        loaded.append(_TolerantUnpickler(io.BytesIO(inner), missing).load())

    _TolerantUnpickler(io.BytesIO(blob), missing, on_flat_dag=load_rows).load()
    return loaded[0] if loaded else None


class _Missing:
    """Stands for a global that cannot be imported (see ``find_missing_code``)."""

    error = ""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass


class _TolerantUnpickler(pickle.Unpickler):
    def __init__(
        self,
        file: io.BytesIO,
        missing: dict[tuple[str, str | None], type[_Missing]],
        on_flat_dag: Callable[[bytes, bool], None] | None = None,
    ) -> None:
        super().__init__(file)
        self._missing = missing
        self._on_flat_dag = on_flat_dag

    def find_class(self, module: str, name: str) -> Any:
        if module == "evkit.dag" and name == "_flat_dag_blob" and self._on_flat_dag is not None:
            return self._on_flat_dag
        if module == "cloudpickle.cloudpickle" and name == "subimport":
            return self._subimport
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError) as exc:
            return self._placeholder(module, name, exc)

    def _subimport(self, module: str) -> object:
        # cloudpickle imports modules a by-value function uses through this call.
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            return self._placeholder(module, None, exc)

    def _placeholder(self, module: str, name: str | None, exc: Exception) -> type[_Missing]:
        key = (module, name)
        if key not in self._missing:
            self._missing[key] = type(name or module, (_Missing,), {"error": str(exc)})
        return self._missing[key]
