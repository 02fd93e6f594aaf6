"""pytest-boardfarm: hardware-in-the-loop tests on a farm of MicroPython boards."""

from .board import Board, BoardInfo, connect
from .errors import (
    BoardError,
    BoardRebooted,
    BoardTimeout,
    ConnectionLost,
    DeviceError,
    ProtocolError,
    UnsupportedOperation,
)
from .files import DeployResult, FileEntry
from .pool import FarmBoard
from .rawrepl import Pacing
from .transcript import Transcript

__all__ = [
    "Board",
    "BoardError",
    "BoardInfo",
    "BoardRebooted",
    "BoardTimeout",
    "ConnectionLost",
    "DeployResult",
    "DeviceError",
    "FarmBoard",
    "FileEntry",
    "Pacing",
    "ProtocolError",
    "Transcript",
    "UnsupportedOperation",
    "connect",
]
