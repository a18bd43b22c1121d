"""A server binary started on a free loopback port for the tests, and stopped after them.

The shared part of ``_redis.RedisServer`` and ``_kafka.KafkaBroker``: start the process,
wait until it answers (nothing it prints says so: poll with a deadline), stop it. Imported
as ``_local_server`` (tests/ is on sys.path through its conftest, and bench puts it there).
"""

from __future__ import annotations

import socket
import subprocess
import time
from types import TracebackType
from typing import Self


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalServer:
    """A server process on ``self.port``, ready when :meth:`answers` says so; a context manager.

    Subclasses pick the port, build the command line, call :meth:`start` and may override
    :meth:`answers` (the default: the port accepts a connection) and :meth:`cleanup`.
    """

    name = "server"
    port: int
    _proc: subprocess.Popen[bytes]

    def start(self, argv: list[str], *, startup_timeout_seconds: float) -> None:
        """Start ``argv`` and return once it answers; raise if it exits or stays silent."""
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + startup_timeout_seconds
        while True:
            if self._proc.poll() is not None:
                output = self._proc.stdout.read().decode(errors="replace") if self._proc.stdout else ""
                raise RuntimeError(f"{self.name} exited with {self._proc.returncode}: {output[-2000:]}")
            try:
                if self.answers():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.name} did not answer on port {self.port} within {startup_timeout_seconds} s"
                )
            time.sleep(0.01)

    def answers(self) -> bool:
        """Whether the server takes requests now (the default: it accepts a connection)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and wait for it to exit."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self.cleanup()

    def cleanup(self) -> None:
        """What to remove once the process has exited (nothing by default)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
