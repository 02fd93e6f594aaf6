"""Temporary folders that belong to one process, named ``PREFIX<pid>-...``.

A process that is killed with SIGKILL cannot remove its own folder. The next process
that makes one with the same prefix removes the folders of this user whose owner
process is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def make(prefix: str) -> Path:
    """A new folder of this process's (after removing those of owners that died)."""
    remove_left_by_dead_owners(prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


def remove_left_by_dead_owners(prefix: str) -> None:
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*-*"):
        pid = path.name[len(prefix) :].split("-", 1)[0]
        with contextlib.suppress(OSError, ValueError):
            if path.lstat().st_uid != os.getuid() or not path.is_dir() or alive(int(pid)):
                continue
            shutil.rmtree(path, ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True
