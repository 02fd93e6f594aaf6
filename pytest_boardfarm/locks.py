"""Exclusive board locks that hold across xdist workers, independent runs and users.

A lock is ``flock()`` on a file in the farm's lock directory, named after what
is physically shared (the port, or the USB serial number). The kernel drops it
when the holder dies, so a killed run never leaves a board locked, whoever ran
it. The file records who holds it (host, pid, user, since) for the message
another run shows while it waits.

Several users may share one lock directory: lock files are made readable and
writable by everyone (0666, whatever the umask), and a directory the plugin
creates itself is world-writable with the sticky bit (1777, like /tmp). A
directory that already exists is never changed. On release the holder record
is cleared and the file removed while still locked, when we may (in a sticky
directory only its owner may remove it; a file left behind is harmless, the
flock is what counts). A waiter that locked a file already removed notices (its
inode no longer matches the path) and tries again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import pwd
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import Stopped

POLL_SECONDS = 0.05
SHARED_FILE_MODE = 0o666  # any user sharing the directory can lock it
SHARED_DIR_MODE = 0o1777  # any user can add a lock file, only its owner can remove it


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

    def summary(self) -> str:
        """One short line for a table (``boardfarm list``): user@host pid N since T, run R."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        run = f", {self.run}" if self.run else ""
        return f"{self.user}@{self.host} pid {self.pid} since {when}{run}"


def parse_holder(data: bytes) -> Holder:
    """A holder record as written by ``BoardLock``; ValueError saying what is wrong."""
    try:
        record = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object: {data[:60]!r}")
    fields: dict[str, type | tuple[type, ...]] = {"host": str, "pid": int, "user": str, "since": (int, float)}
    for key, kind in fields.items():
        value = record.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{key}: {value!r:.40}")
    run = record.get("run", "")
    if not isinstance(run, str):
        raise ValueError(f"run: {run!r:.40}")
    try:
        since = float(record["since"])
        if not math.isfinite(since):
            raise ValueError
        time.localtime(since)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"since: {record['since']!r:.40}") from None
    return Holder(record["host"], record["pid"], record["user"], since, run)


def lock_file_name(key: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")[:60]
    return f"{readable}-{hashlib.sha1(key.encode()).hexdigest()[:10]}.lock"


def ensure_lock_dir(path: Path) -> None:
    """Create the lock directory if it is missing, shared by all users (1777).
    A directory that exists, ours or the user's, keeps its mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    os.chmod(path, SHARED_DIR_MODE)  # mkdir's mode is cut by the umask


def pause(seconds: float, stopping: threading.Event | None) -> None:
    """Sleep between two looks at a lock, or raise Stopped if the command is stopped meanwhile."""
    if stopping is None:
        time.sleep(seconds)
    elif stopping.wait(seconds):
        raise Stopped("stopped while waiting for a lock")


class BoardLock:
    def __init__(self, lock_dir: Path, key: str, run: str = "") -> None:
        self.path = Path(lock_dir) / lock_file_name(key)
        self.key = key
        self.run = run
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float, stopping: threading.Event | None = None) -> None:
        """Wait up to ``timeout`` seconds; raise LockTimeout naming the holder (Stopped once
        ``stopping`` is set)."""
        ensure_lock_dir(self.path.parent)
        end = time.monotonic() + timeout
        while True:
            try:
                fd = self._open()
            except PermissionError as exc:
                raise PermissionError(
                    exc.errno,
                    f"{exc.strerror}: cannot lock {self.path}; a lock directory shared by several users"
                    " must be writable by all of them (as one the plugin creates is: mode 1777)",
                ) from None
            if fd is None:  # removed between our looks: try again at once
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= end:
                    raise LockTimeout(
                        f"board {self.key!r} is locked by {self.who()}; gave up after {timeout:g}s ({self.path})"
                    ) from None
                pause(POLL_SECONDS, stopping)  # waiting for another run, not for a device
                continue
            if self._still_linked(fd):
                self._fd = fd
                self._write_holder()
                return
            os.close(fd)  # released and removed while we waited: lock the new file

    def is_free(self) -> bool:
        """Whether nobody holds the lock at this moment (a glance, to choose an order)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:  # no file: nobody holds it (or we cannot tell: acquire will say)
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # drops the shared lock at once
        return True

    def _open(self) -> int | None:
        """The lock file, opened; created (0666) if missing. An existing file is opened
        without O_CREAT: Linux refuses O_CREAT on another user's file in a sticky
        directory (fs.protected_regular), even to root."""
        try:
            return os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            pass
        except PermissionError:  # a file someone made before locks were shared: lock it read-only
            return os.open(self.path, os.O_RDONLY)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, SHARED_FILE_MODE)
        except FileExistsError:
            return None
        with contextlib.suppress(OSError):
            os.fchmod(fd, SHARED_FILE_MODE)  # the umask cut it
        return fd

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
        with contextlib.suppress(OSError):  # a read-only file: the lock holds, the record is not ours
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)

    def holder(self) -> Holder | None:
        """Who holds the lock, as its record says; None if there is no readable record."""
        try:
            return parse_holder(self.path.read_bytes())
        except (OSError, ValueError):
            return None

    def who(self) -> str:
        """The holder, for a message: never raises, whatever is in the file."""
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            return f"an unknown holder (no record: {exc.strerror})"
        if not data.strip():
            return "an unknown holder (no record yet)"
        try:
            return parse_holder(data).describe()
        except ValueError as exc:
            return f"an unknown holder (unreadable record: {exc})"

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no stale record, should the file stay
        with contextlib.suppress(FileNotFoundError, PermissionError):  # another user's file: leave it
            os.unlink(self.path)
        os.close(fd)  # closing drops the flock


def _user() -> str:
    """Who we are, from the user database (not $USER, which sudo and setpriv keep)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())
