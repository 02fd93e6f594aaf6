"""Shared fixtures: emulated micro:bits, started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_boardfarm import Board, connect
from pytest_boardfarm.emulator import MicrobitEmulator, check_installed

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def emulator() -> Iterator[MicrobitEmulator]:
    check_installed()
    with MicrobitEmulator() as emu:
        yield emu


@pytest.fixture
def mb(emulator: MicrobitEmulator) -> Iterator[Board]:
    """A connected emulated micro:bit with an empty file system."""
    if not emulator.running():  # a test may have stopped it on purpose
        emulator.start()
    with connect(emulator.url, timeout=10) as board:
        board.soft_reset()
        for entry in board.ls():
            board.remove(entry.name)
        yield board
