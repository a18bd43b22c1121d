"""The browser tests' directory: live.ipynb, ask.ipynb and scale.ipynb are the notebooks
the tests here run in JupyterLab (and Notebook 7), not tutorials, so
`pytest --nbval tests notebooks` must not collect them."""

from __future__ import annotations

collect_ignore = ["live.ipynb", "ask.ipynb", "scale.ipynb"]
