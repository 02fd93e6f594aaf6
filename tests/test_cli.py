"""The boardfarm command line, run as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from pytest_boardfarm import connect


def qemu_children(pid: int) -> list[int]:
    """PIDs of QEMU processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if int(fields[1]) == pid and comm.startswith("qemu-system"):
            found.append(int(entry))
    return found


def test_emulate_prints_urls_and_cleans_up_on_sigint() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_boardfarm.cli", "emulate", "--count", "2"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        urls = [proc.stdout.readline().strip() for _ in range(2)]
        assert all(url.startswith("socket://127.0.0.1:") for url in urls) and len(set(urls)) == 2
        for url in urls:
            with connect(url, timeout=5) as board:
                assert board.eval("6 * 7") == 42
        assert len(qemu_children(proc.pid)) == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        proc.kill()
    assert qemu_children(proc.pid) == []


def test_emulate_killed_takes_its_emulators_along() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_boardfarm.cli", "emulate", "--count", "1"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    children = qemu_children(proc.pid)
    assert len(children) == 1
    proc.kill()
    proc.wait(timeout=5)
    for _ in range(100):
        if not os.path.exists(f"/proc/{children[0]}"):
            break
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{children[0]}")


def test_missing_qemu_names_the_packages() -> None:
    env = dict(os.environ, PATH="/nonexistent")
    result = subprocess.run(
        [sys.executable, "-m", "pytest_boardfarm.cli", "emulate"], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 2
    assert "apt-get install qemu-system-arm firmware-microbit-micropython" in result.stderr


def test_a_count_of_no_boards_is_a_usage_error() -> None:
    """Before: ``--count 0`` printed nothing and waited for Ctrl-C, as if it served boards."""
    for count in ("0", "-2"):
        done = subprocess.run(
            [sys.executable, "-m", "pytest_boardfarm.cli", "emulate", "--count", count],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2
        assert f"argument --count/-n: expected 1 or more boards, got '{count}'" in done.stderr


def test_flash_lock_timeout_must_be_finite_seconds() -> None:
    """nan would wait forever for a locked board; inf and negatives make no sense either."""
    for value in ("nan", "inf", "-1"):
        done = subprocess.run(
            [sys.executable, "-m", "pytest_boardfarm.cli", "flash", "--farm", "farm.yaml", "--lock-timeout", value],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2
        assert f"argument --lock-timeout: expected a number of seconds, 0 or more and at most 86400, got '{value}'" in (
            done.stderr
        )
