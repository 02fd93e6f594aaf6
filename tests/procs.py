"""Which emulators did *this* test start? Other work may run emulators on the same machine.
(And: stopping a command with a signal once it is busy.)

A test marks the environment of what it starts with a fresh token; QEMU and the
Node bridge inherit the environment, so their processes are found by the token
in /proc/<pid>/environ, even after their parent died and they were reparented.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

MARK = "BOARDFARM_TEST_RUN"
# What the command line of an emulator process holds, one per emulated board type.
EMULATOR_COMMANDS = (b"qemu-system-arm", b"mpwasm_bridge.mjs", b"unixport_bridge.py", b"micropython_run")


def marked_qemu_pids(mark: str, commands: tuple[bytes, ...] = EMULATOR_COMMANDS) -> set[int]:
    """Live emulator processes (QEMU, the WebAssembly bridge) whose environment carries ``mark``."""
    needle = f"\0{MARK}={mark}\0".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
                if not any(command in cmdline for command in commands):
                    continue
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in b"\0" + f.read() + b"\0":
                    found.add(int(entry))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return found


@contextlib.contextmanager
def marked() -> Iterator[str]:
    """Mark what is started inside (this process's environment is inherited) with a fresh token."""
    mark = uuid.uuid4().hex
    previous = os.environ.get(MARK)
    os.environ[MARK] = mark
    try:
        yield mark
    finally:
        if previous is None:
            del os.environ[MARK]
        else:
            os.environ[MARK] = previous


def assert_no_emulators(mark: str) -> None:
    """No emulator carrying ``mark`` is left (allowing a moment for the kernel to reap)."""
    for _ in range(50):
        if not marked_qemu_pids(mark):
            return
        time.sleep(0.1)
    assert not marked_qemu_pids(mark), "an emulator was left behind"


def signal_when(
    proc: subprocess.Popen[str], ready: Callable[[], bool], sig: signal.Signals, settle: float = 0.0, wait: float = 30.0
) -> tuple[str, str]:
    """Once ``ready()`` (within ``wait`` s, the process still running), and ``settle`` s more,
    send ``sig`` and return the process's output: it gets 20 s to stop, else it is killed."""
    try:
        deadline = time.monotonic() + wait
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(settle)
        proc.send_signal(sig)
        return proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
