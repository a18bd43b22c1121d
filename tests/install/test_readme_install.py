"""The README's install lines give what the README's examples need, in a fresh venv.

A new user makes a virtual environment, runs one of the README's ``pip install`` lines
and pastes the README's code. This test does the same: it builds evkit's wheel once, makes
a venv with ``python -m venv`` for each install line, installs the wheel with exactly the
extra that line names (pip takes the dependencies from its wheel cache and the package
registries), and runs the README's code there, read from README.md so the test follows
the README:

- ``pip install evkit``: the first example (two timers and a gather step) in a plain
  python process, its timers shortened from 60 s / 30 s to 0.6 s / 0.3 s;
- the notebook line: the "Using it" example (top-level ``await``, a DataFrame as the
  cell's result) in a real IPython kernel running on that venv's interpreter.
"""

from __future__ import annotations

import ast
import json
import os
import queue
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

pytestmark = [pytest.mark.slow, pytest.mark.timeout(170)]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
INSTALL_LINE = re.compile(r"^pip install (?:'evkit\[(?P<extra>[a-z,]+)\]'|evkit)(?=\s|$)", re.MULTILINE)


def readme_sections() -> dict[str, str]:
    """README.md's text by `## ` heading (the text before the first heading under "")."""
    sections: dict[str, str] = {}
    heading = ""
    for part in re.split(r"^(## .*)$", README.read_text(), flags=re.MULTILINE):
        if part.startswith("## "):
            heading = part[3:].strip()
        else:
            sections[heading] = sections.get(heading, "") + part
    return sections


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def readme_install_extras() -> list[str]:
    """The extra of each `pip install evkit...` line in the README's Install section
    ("" for plain evkit), in order."""
    return [match["extra"] or "" for match in INSTALL_LINE.finditer(readme_sections()["Install"])]


def clean_env() -> dict[str, str]:
    """This process's environment without what would make the new venv see anything but
    what pip put in it: PYTHONPATH (developers point it at a worktree), the active venv,
    and the store location the examples take by default."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "EVKIT_STORAGE", "COVERAGE_PROCESS_START"):
        env.pop(name, None)
    return env


def run(command: list[str], cwd: Path, timeout_seconds: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        command,
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
        check=False,
    )
    assert proc.returncode == 0, f"{command} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """evkit's wheel, built once from this checkout: what `pip install evkit` would fetch."""
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)], out, 120)
    (built,) = out.glob("evkit-*.whl")
    return built


def make_venv(where: Path, wheel: Path, extra: str) -> Path:
    """A new venv at `where` with evkit installed as `pip install 'evkit[extra]'` would;
    returns its python.

    This process's pip installs into the venv (`pip --python`): the pip that `venv`
    bundles with Python 3.11 took 4-6 times as long for the notebook extra. Nothing is
    byte-compiled at install time (`--no-compile`: half of pip's CPU time); the kernel
    compiles what it imports.
    """
    run([sys.executable, "-m", "venv", "--without-pip", str(where)], where.parent, 60)
    python = where / "bin" / "python"
    target = f"{wheel}[{extra}]" if extra else str(wheel)
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-compile"]
    run([*pip, target], where.parent, 150)
    return python


def test_the_readme_has_a_plain_and_a_notebook_install_line() -> None:
    assert readme_install_extras() == ["notebook", ""]


def with_last_expression_printed(code: str) -> str:
    """The code with its last statement, an expression, wrapped in print(repr(...))."""
    module = ast.parse(code)
    last = module.body[-1]
    assert isinstance(last, ast.Expr), "the README's first example should end with an expression"
    module.body[-1] = ast.Expr(
        ast.Call(
            ast.Name("print", ast.Load()), [ast.Call(ast.Name("repr", ast.Load()), [last.value], [])], []
        )
    )
    return ast.unparse(ast.fix_missing_locations(module))


def test_plain_install_runs_the_first_example(tmp_path: Path, wheel: Path) -> None:
    assert "" in readme_install_extras()
    python = make_venv(tmp_path / "venv", wheel, "")
    code = python_blocks(README.read_text())[0]
    quick = re.sub(
        r"time\.time\(\) \+ (\d+)", lambda m: f"time.time() + {int(m[1]) / 100}", code
    )  # 60 s / 30 s -> 0.6 s / 0.3 s
    assert quick.count("time.time() + 0.") == 2, code
    script = tmp_path / "first_example.py"
    script.write_text(
        with_last_expression_printed(quick)
        + "\nimport evkit, sys\n"
        + "print('evkit from', evkit.__file__)\n"
        + "print('states', evkit.sql('SELECT state FROM events').fetchall())\n"
    )
    out = run([str(python), str(script)], tmp_path, 60).stdout.splitlines()
    assert out[0] == "(None, None)"
    assert out[1].startswith(f"evkit from {tmp_path / 'venv'}"), out  # the installed wheel, not this checkout
    assert out[2] == "states [('committed',), ('committed',)]"
    assert (tmp_path / "evkit.duckdb").exists()  # the default store, in the working directory


@pytest.fixture
def notebook_kernel(tmp_path: Path, wheel: Path) -> Iterator[BlockingKernelClient]:
    """A kernel running on a new venv's python, where evkit was installed with the
    README's notebook extra; it works in the test's temporary folder."""
    extras = [extra for extra in readme_install_extras() if extra]
    assert len(extras) == 1, f"expected one install line with an extra in the README, got {extras}"
    python = make_venv(tmp_path / "venv", wheel, extras[0])
    spec_dir = tmp_path / "kernels" / "fresh-venv"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec | {"display_name": "fresh venv"}))
    manager = KernelManager(
        kernel_name="fresh-venv",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]),
    )
    manager.start_kernel(cwd=str(tmp_path), env=clean_env())
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    yield client
    client.stop_channels()
    manager.shutdown_kernel(now=True)


def execute(client: BlockingKernelClient, code: str, timeout_seconds: float) -> list[dict[str, object]]:
    """Run `code` as one cell; the IOPub messages it caused, up to the kernel going idle."""
    msg_id = client.execute(code)
    messages: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            message = client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"the cell did not finish within {timeout_seconds} s; its output so far: {messages}")
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            return messages
        messages.append({"type": message["msg_type"], **message["content"]})


def test_notebook_install_runs_the_using_it_example_in_a_kernel(
    notebook_kernel: BlockingKernelClient, tmp_path: Path
) -> None:
    # The section's first block is the notebook cell; the later ones show variations
    # (wait_for_any, whose example waits an hour for its timer).
    code = python_blocks(readme_sections()["Using it"])[0]
    messages = execute(notebook_kernel, code, 60)
    errors = [m for m in messages if m["type"] == "error" or m.get("name") == "stderr"]
    assert not errors, errors
    (shown,) = [m for m in messages if m["type"] == "display_data"]
    assert "application/vnd.jupyter.widget-view+json" in shown["data"]  # type: ignore[operator]  # the live view
    (result,) = [m for m in messages if m["type"] == "execute_result"]
    data = result["data"]
    assert isinstance(data, dict)
    assert "text/html" in data  # a pandas DataFrame, as the README's `.df()` promises
    table = data["text/plain"]
    assert "committed" in table
    assert "ana" in table
    assert (tmp_path / "runs.duckdb").exists()
    check = execute(notebook_kernel, "import evkit; print(evkit.__file__)", 30)
    printed = "".join(str(m["text"]) for m in check if m["type"] == "stream")
    assert printed.startswith(str(tmp_path / "venv")), check  # the installed wheel, not this checkout
