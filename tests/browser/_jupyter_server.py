"""What the browser tests share: a JupyterLab or Notebook 7 server on loopback, and how
they start Debian's chromium."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import pytest
from _local_server import free_port

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium() -> str:
    """The path of Debian's chromium; the test is skipped without it."""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return path


@dataclass
class JupyterServer:
    """A JupyterLab or Notebook 7 server on loopback serving ``root``."""

    app: Literal["jupyterlab", "notebook"]
    url: str
    token: str
    root: pathlib.Path
    process: subprocess.Popen[bytes]

    def api(self, method: str, path: str) -> object:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None


@contextlib.contextmanager
def serve(app: Literal["jupyterlab", "notebook"], tmp_path: pathlib.Path) -> Iterator[JupyterServer]:
    """``app`` serving the empty directory ``tmp_path / "root"`` (copy notebooks into it).

    Its kernels are deleted and the server is stopped by PID at the end. The test is
    skipped when ``app`` is not installed.
    """
    pytest.importorskip(app, reason=f"{app} is not installed (pip install 'evkit[test]')")
    root = tmp_path / "root"
    root.mkdir()
    token = uuid.uuid4().hex
    port = free_port()
    klass = "LabApp" if app == "jupyterlab" else "JupyterNotebookApp"
    command = [
        sys.executable, "-m", app, "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        f"--{klass}.expose_app_in_browser=True",
        f"--{klass}.workspaces_dir={tmp_path / 'workspaces'}",
        f"--{klass}.user_settings_dir={tmp_path / 'settings'}",
    ]  # fmt: skip
    if app == "jupyterlab":
        command += [
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    # No "get notified about Jupyter news?" toast over the widget in a screenshot.
    notification = (
        tmp_path / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    )
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false"}))
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    log_path = tmp_path / "server.log"
    log = log_path.open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = JupyterServer(app=app, url=f"http://127.0.0.1:{port}", token=token, root=root, process=process)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"{app} exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                server.api("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(f"{app} did not answer within 60 s:\n{log_path.read_text()}")
                time.sleep(0.2)  # polling a condition with a deadline: nothing to wait on
        yield server
    finally:
        try:
            sessions = server.api("GET", "/api/sessions")
            for session in sessions if isinstance(sessions, list) else []:
                server.api("DELETE", f"/api/sessions/{session['id']}")
        except (urllib.error.URLError, ConnectionError):
            pass
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
