"""The browser tests' directory: live.ipynb is the notebook test_jupyterlab.py runs in
JupyterLab, not a tutorial, so `pytest --nbval tests notebooks` must not collect it."""

from __future__ import annotations

collect_ignore = ["live.ipynb"]
