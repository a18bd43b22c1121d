"""A real redis-server on a free loopback port, for tests and the crash proof.

Test modules import it as ``_redis`` (tests/ is on sys.path through its conftest), start a
:class:`RedisServer` in their own fixture, and skip with :data:`SKIP_REASON` when
:func:`redis_available` is false.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
SKIP_REASON = (
    "redis-server is not installed (the Redis Streams tests start a real one): apt-get install redis-server"
)


def redis_available() -> bool:
    """True if the redis-server binary can be run."""
    return os.access(REDIS_SERVER, os.X_OK)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``redis-server`` on 127.0.0.1 with persistence off, stopped on exit.

    Its data lives only in memory: a test gets a clean server, and the crash proof kills
    the *workflow* process, never this one.
    """

    def __init__(self, *, startup_timeout_seconds: float = 10.0) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="evkit-redis-")
        self._proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._dir,
                "--daemonize", "no",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        self._wait_ready(startup_timeout_seconds)

    def _wait_ready(self, timeout_seconds: float) -> None:
        # Nothing tells us when redis accepts connections but a connection: poll with a deadline.
        deadline = time.monotonic() + timeout_seconds
        while True:
            if self._proc.poll() is not None:
                output = self._proc.stdout.read().decode(errors="replace") if self._proc.stdout else ""
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}: {output[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"redis-server did not answer PING on port {self.port} within {timeout_seconds} s"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
