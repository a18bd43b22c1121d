"""The browser tests' directory: live.ipynb and ask.ipynb are the notebooks that
test_jupyterlab.py and test_ask_form.py run in JupyterLab, not tutorials, so
`pytest --nbval tests notebooks` must not collect them."""

from __future__ import annotations

collect_ignore = ["live.ipynb", "ask.ipynb"]
