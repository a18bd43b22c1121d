"""Module attributes that are imported on first use (PEP 562), for ``evkit`` and ``evkit.workflow``.

Owns :func:`lazy_names` and nothing else: it imports only the standard library, so the
package's own ``__init__`` can use it without loading anything of evkit.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_names(
    module_name: str, sources: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a module whose names ``sources`` load on first use.

    Args:
        module_name: The module's ``__name__``.
        sources: Each lazy name and the module it comes from; a name that is itself a
            submodule (``"workflow": "evkit.workflow"``) is that module.

    Returns:
        Functions to assign to the module's ``__getattr__`` and ``__dir__``. A loaded name
        is kept in the module's globals, so it is looked up once.
    """

    def __getattr__(name: str) -> object:
        source = sources.get(name)
        if source is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        imported = importlib.import_module(source)
        value = imported if source == f"{module_name}.{name}" else getattr(imported, name)
        setattr(sys.modules[module_name], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[module_name]), *sources})

    return __getattr__, __dir__
