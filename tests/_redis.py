"""A real redis-server on a free loopback port, for tests and the crash proof.

Test modules import it as ``_redis`` (tests/ is on sys.path through its conftest), start a
:class:`RedisServer` in their own fixture, and skip with :data:`SKIP_REASON` when
:func:`redis_available` is false.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

from _local_server import LocalServer, free_port

__all__ = ["REDIS_SERVER", "SKIP_REASON", "RedisServer", "free_port", "redis_available"]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
SKIP_REASON = (
    "redis-server is not installed (the Redis Streams tests start a real one): apt-get install redis-server"
)


def redis_available() -> bool:
    """True if the redis-server binary can be run."""
    return os.access(REDIS_SERVER, os.X_OK)


class RedisServer(LocalServer):
    """``redis-server`` on 127.0.0.1 with persistence off, stopped on exit.

    Its data lives only in memory: a test gets a clean server, and the crash proof kills
    the *workflow* process, never this one.
    """

    name = "redis-server"

    def __init__(self, *, startup_timeout_seconds: float = 10.0) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="evkit-redis-")
        self.start(
            [
                REDIS_SERVER,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._dir,
                "--daemonize", "no",
            ],
            startup_timeout_seconds=startup_timeout_seconds,
        )  # fmt: skip

    def answers(self) -> bool:
        """Whether redis answers PING (it accepts connections a little before it does)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")

    def cleanup(self) -> None:
        """Remove its working directory."""
        shutil.rmtree(self._dir, ignore_errors=True)
