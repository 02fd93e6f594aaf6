"""Board locks: exclusive across processes, released by the kernel on death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_boardfarm.locks import BoardLock, LockTimeout


def holder_process(lock_dir: Path, key: str) -> subprocess.Popen[str]:
    code = textwrap.dedent(
        f"""
        import sys, time
        from pytest_boardfarm.locks import BoardLock
        lock = BoardLock({str(lock_dir)!r}, {key!r}, run="other-run")
        lock.acquire(5)
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    proc = holder_process(tmp_path, "/dev/ttyACM0")
    try:
        lock = BoardLock(tmp_path, "/dev/ttyACM0")
        start = time.monotonic()
        with pytest.raises(LockTimeout) as info:
            lock.acquire(0.3)
        assert time.monotonic() - start < 2
        message = str(info.value)
        assert f"pid {proc.pid}" in message and "host " in message and "user " in message
        assert "since " in message and "other-run" in message
    finally:
        proc.kill()
        proc.wait()


def test_killed_holder_leaves_the_board_free(tmp_path: Path) -> None:
    proc = holder_process(tmp_path, "socket://127.0.0.1:4000")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lock = BoardLock(tmp_path, "socket://127.0.0.1:4000")
    lock.acquire(2)
    assert lock.held
    lock.release()
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_waiter_gets_the_lock_when_released(tmp_path: Path) -> None:
    first = BoardLock(tmp_path, "k")
    first.acquire(1)
    code = f"from pytest_boardfarm.locks import BoardLock; BoardLock({str(tmp_path)!r}, 'k').acquire(10); print('got')"
    waiter = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    assert waiter.poll() is None  # still waiting
    first.release()
    out, _ = waiter.communicate(timeout=10)
    assert out.strip() == "got"


def test_lock_names_are_safe_file_names(tmp_path: Path) -> None:
    lock = BoardLock(tmp_path, "rfc2217://lab-pi:4000/../../etc")
    assert lock.path.parent == tmp_path and "/" not in lock.path.name
