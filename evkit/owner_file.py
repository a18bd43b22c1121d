"""The owner file beside a store: where the process that owns it serves its control endpoint.

``STORE.owner.json`` holds the endpoint's URL, a random secret, the owner's pid and host.
It is created with mode 0600 (only the owner's user can read the secret) and replaced
atomically, removed when the owner closes the store, and recognised as stale when its
pid is gone (a crash). This module does file I/O only; it never opens the store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from dataclasses import asdict, dataclass

OWNER_FILE_SUFFIX = ".owner.json"

logger = logging.getLogger("evkit")


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerInfo:
    """What the owner file says about the process that owns a store.

    Attributes:
        url: The control endpoint, e.g. ``http://127.0.0.1:40123``.
        secret: Sent by every request (``Authorization: Bearer <secret>``).
        pid: The owner's process id.
        host: The owner's host name.
        storage: The store's path, as the owner opened it.
    """

    url: str
    secret: str
    pid: int
    host: str
    storage: str

    def describe(self) -> str:
        """``process 123 on host 'h'``: how messages name the owner."""
        return f"process {self.pid} on host {self.host!r}"


def owner_file_path(storage: str) -> str:
    """The owner file of the store at ``storage``.

    It sits beside the file a symlink names, so every spelling of the store's path finds it.
    """
    return os.path.realpath(storage) + OWNER_FILE_SUFFIX


def write_owner_file(info: OwnerInfo) -> str:
    """Write ``info`` beside its store, readable by this user only; returns the file's path.

    Written to a temporary file made with mode 0600 (never readable by others, even for
    a moment), flushed, then renamed over any older (stale) file.
    """
    path = owner_file_path(info.storage)
    temporary = f"{path}.{os.getpid()}.tmp"
    # A new file, never one found there: a leftover (or a link planted in a shared
    # directory) is removed first, and O_EXCL | O_NOFOLLOW refuse anything put back.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, json.dumps(asdict(info)).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    return path


def read_owner_file(storage: str) -> OwnerInfo | None:
    """The owner file of ``storage`` as written, or ``None`` if there is none to trust.

    Only a file of this process's user that no one else may write is read: another
    user's file (planted in a shared directory) would send this process's requests, and
    the pickled answers it unpickles, to that user's server.
    """
    try:
        with open(owner_file_path(storage), encoding="utf-8") as file:
            st = os.fstat(file.fileno())
            if st.st_uid != os.getuid() or st.st_mode & 0o022:
                logger.warning(
                    "evkit: ignoring the owner file of store %r: it belongs to another user or "
                    "others may write it (only an owner file of your own, mode 0600, is used)",
                    storage,
                )
                return None
            data = json.load(file)
        return OwnerInfo(
            url=str(data["url"]),
            secret=str(data["secret"]),
            pid=int(data["pid"]),
            host=str(data["host"]),
            storage=str(data["storage"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    # A killed process stays in the table as a zombie until its parent reaps it: gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            return file.read().rsplit(")", 1)[-1].split()[:1] != ["Z"]
    except OSError:
        return True  # no /proc (macOS): the signal's answer is all there is


def is_stale(info: OwnerInfo) -> bool:
    """True if the owner that wrote ``info`` is gone (its pid no longer exists here).

    A file written on another host cannot be checked from here; it counts as live.
    """
    return info.host == socket.gethostname() and not pid_alive(info.pid)


def live_owner(storage: str) -> OwnerInfo | None:
    """The owner of ``storage`` if its owner file exists and is not stale, else ``None``."""
    info = read_owner_file(storage)
    if info is None or is_stale(info):
        return None
    return info


def remove_owner_file(info: OwnerInfo) -> None:
    """Remove the owner file if it is still ``info``'s (a newer owner's file stays)."""
    current = read_owner_file(info.storage)
    if current is not None and current.secret == info.secret:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(owner_file_path(info.storage))
