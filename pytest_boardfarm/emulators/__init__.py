"""Emulated board types, by the name farm.yaml gives them (``emulator: NAME``).

A new type is one class (see ``base.EmulatedBoard``: how to run its process and
what it needs installed) and one line in ``EMULATORS``.
"""

from __future__ import annotations

from ..deadline import Deadline
from ..errors import BoardError
from .base import EmulatedBoard, EmulatorError, free_port
from .microbit import MicrobitEmulator
from .unixport import UnixPortBoard
from .webassembly import WebAssemblyBoard

EMULATORS: dict[str, type[EmulatedBoard]] = {
    MicrobitEmulator.name: MicrobitEmulator,
    WebAssemblyBoard.name: WebAssemblyBoard,
    UnixPortBoard.name: UnixPortBoard,
}

__all__ = [
    "EMULATORS",
    "EmulatedBoard",
    "EmulatorError",
    "MicrobitEmulator",
    "UnixPortBoard",
    "WebAssemblyBoard",
    "free_port",
    "start_many",
]


def start_many(
    count: int, timeout: float = 30.0, board_type: type[EmulatedBoard] = MicrobitEmulator
) -> list[EmulatedBoard]:
    """Start ``count`` boards in parallel; all or none (started ones are stopped on error)."""
    deadline = Deadline(timeout)
    boards = [board_type() for _ in range(count)]
    try:
        for board in boards:
            board.spawn()
        for board in boards:
            try:
                board.wait_ready(deadline.remaining())
            except BoardError:  # EmulatorError, or the raw REPL's BoardTimeout
                board.stop()
                board.port = None
                board.start(max(deadline.remaining(), 1.0))
    except BaseException:
        for board in boards:
            board.stop()
        raise
    return boards
