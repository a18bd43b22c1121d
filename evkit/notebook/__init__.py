"""Notebook integration: live widgets, the timeline plot and the ``%evkit_sql`` magic.

The only part of evkit that imports ipywidgets, anywidget, IPython or matplotlib. Names
are imported on first use, so ``import evkit.notebook`` needs none of them.
"""

from __future__ import annotations

import importlib

__all__ = ["RunWidget", "load_ipython_extension", "mimebundle", "plot_timeline", "run_widget"]

_WHERE = {
    "RunWidget": "evkit.notebook.widget",
    "load_ipython_extension": "evkit.notebook.magic",
    "mimebundle": "evkit.notebook.display",
    "plot_timeline": "evkit.notebook.timeline",
    "run_widget": "evkit.notebook.display",
}


def __getattr__(name: str) -> object:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'evkit.notebook' has no attribute {name!r}")
