"""Step fingerprints in a real ipykernel: what a notebook user does to cells.

In a kernel every cell's functions live in ``__main__``, and each cell's code gets a file
name of its own (IPython names it after the cell's source) and line numbers from the
cell's top: the unit tests imitate that, this test checks it against the real thing.
Re-running an unedited cell must keep a step's digest; editing a helper cell, even one
the step reaches only through another helper, must change it; moving the step's code
down a line must not.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.slow, pytest.mark.allow_blocking]

INNER = "def inner(x):\n    return x + 1\n"
HELPER = "def helper(x):\n    return inner(x) * 2\n"
STEP = (
    "from evkit import workflow\n"
    "from evkit.fingerprint import step_code_fingerprint\n"
    "\n"
    "@workflow.step\n"
    "def double(x):\n"
    "    return helper(x) * 2\n"
)


def digest_cell(label: str) -> str:
    return f"digests[{label!r}] = step_code_fingerprint(double)\n"


def test_rerunning_unedited_cells_keeps_the_digest_and_editing_a_helper_cell_changes_it() -> None:
    cells = [
        "digests = {}\n",
        INNER,
        HELPER,
        STEP,
        digest_cell("first"),
        # "Run All" again: the same cells, unedited.
        INNER,
        HELPER,
        STEP,
        digest_cell("rerun"),
        # The step's cell edited above the function only (its lines move down).
        "# double the helper's result\n\n" + STEP,
        digest_cell("moved"),
        # The helper of the helper edited, and only that cell re-run.
        INNER.replace("x + 1", "x + 10"),
        digest_cell("inner_edited"),
        # Edited back: the first digest again.
        INNER,
        digest_cell("inner_restored"),
        HELPER.replace("* 2", "* 3"),
        digest_cell("helper_edited"),
        "import json\nprint(json.dumps(digests))\n",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    NotebookClient(notebook, kernel_name="python3", timeout=60).execute()
    digests = json.loads(notebook.cells[-1].outputs[0]["text"])
    assert digests["rerun"] == digests["first"]
    assert digests["moved"] == digests["first"]
    assert digests["inner_edited"] != digests["first"]
    assert digests["inner_restored"] == digests["first"]
    assert digests["helper_edited"] not in {digests["first"], digests["inner_edited"]}
