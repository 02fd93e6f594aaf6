"""Exclusive board locks that hold across xdist workers and independent runs.

A lock is ``flock()`` on a file in the farm's lock directory, named after what
is physically shared (the port, or the USB serial number). The kernel drops it
when the holder dies, so a killed run never leaves a board locked. The file
records who holds it (host, pid, user, since) for the message another run
shows when it gives up waiting. On release the file is removed while still
locked; a waiter that locked a file already removed notices (its inode no
longer matches the path) and tries again.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

POLL_SECONDS = 0.05


class LockTimeout(Exception):
    """Another holder kept the board for longer than we were willing to wait."""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    user: str
    since: float
    run: str = ""

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        run = f", {self.run}" if self.run else ""
        return f"host {self.host}, pid {self.pid}, user {self.user}, since {when}{run}"


def lock_file_name(key: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")[:60]
    return f"{readable}-{hashlib.sha1(key.encode()).hexdigest()[:10]}.lock"


class BoardLock:
    def __init__(self, lock_dir: Path, key: str, run: str = "") -> None:
        self.path = Path(lock_dir) / lock_file_name(key)
        self.key = key
        self.run = run
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds; raise LockTimeout naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(self.path.parent, 0o1777)  # shared by CI jobs of different users
        end = time.monotonic() + timeout
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= end:
                    holder = self.holder()
                    who = holder.describe() if holder else "an unknown holder"
                    raise LockTimeout(
                        f"board {self.key!r} is locked by {who}; gave up after {timeout:g}s ({self.path})"
                    ) from None
                time.sleep(POLL_SECONDS)  # waiting for another run, not for a device
                continue
            if self._still_linked(fd):
                self._fd = fd
                self._write_holder()
                return
            os.close(fd)  # released and removed while we waited: lock the new file

    def _still_linked(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def _write_holder(self) -> None:
        assert self._fd is not None
        record = {"host": socket.gethostname(), "pid": os.getpid(), "user": _user(), "since": time.time()}
        if self.run:
            record["run"] = self.run
        data = json.dumps(record).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def holder(self) -> Holder | None:
        try:
            record = json.loads(self.path.read_text())
            return Holder(**record)
        except (OSError, ValueError, TypeError):
            return None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(fd)  # closing drops the flock


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
