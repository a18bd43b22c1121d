"""Notebook integration: live widgets, the timeline plot and the ``%evkit_sql`` magic.

The only part of evkit that imports ipywidgets, anywidget, IPython or matplotlib.
"""

from __future__ import annotations
