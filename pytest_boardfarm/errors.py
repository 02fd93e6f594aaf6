"""Exceptions raised by pytest-boardfarm.

Everything a board can do wrong is a :class:`BoardError`, so a caller that only
wants "did the board work" catches one class.
"""

from __future__ import annotations


class BoardError(Exception):
    """Base class for every failure that involves a board."""


class Stopped(KeyboardInterrupt):
    """The command was stopped (Ctrl-C, SIGTERM) while this thread waited on a board or its lock.

    A signal reaches only the main thread; a command that works on boards in threads of
    its own tells them through an event, and their waits end with this."""


class DeviceError(BoardError):
    """The code running on the board raised an exception.

    ``traceback`` is the text exactly as the device printed it; ``exc_name`` is
    the exception class name taken from its last line (``MemoryError``, ...).
    """

    def __init__(self, traceback: str, stdout: str = "", board: str = "") -> None:
        self.traceback = traceback
        self.stdout = stdout
        self.board = board
        self.exc_name = exception_name(traceback)
        where = f" on {board}" if board else ""
        super().__init__(f"device raised {self.exc_name}{where}:\n{traceback.rstrip()}")


class BoardTimeout(BoardError):
    """A deadline passed while waiting for the board."""

    def __init__(self, message: str, output: bytes = b"") -> None:
        self.output = output
        super().__init__(message)


class ConnectionLost(BoardError):
    """The port went away (USB unplugged, emulator gone, socket closed)."""


class BoardRebooted(BoardError):
    """The board rebooted while running code (machine.reset(), a crash, a watchdog, SystemExit).

    ``at_prompt``: the reboot left the board at an idle raw REPL prompt already.
    """

    def __init__(self, message: str, output: bytes = b"", *, at_prompt: bool = False) -> None:
        self.output = output
        self.at_prompt = at_prompt
        super().__init__(message)


class ProtocolError(BoardError):
    """The board answered, but not as the raw REPL protocol says it should."""


class UnsupportedOperation(BoardError):
    """The firmware lacks what an operation needs (e.g. directories on a flat FS)."""


def exception_name(traceback: str) -> str:
    """Name of the exception in a MicroPython traceback (its last line's prefix)."""
    lines = [line for line in traceback.strip().splitlines() if line.strip()]
    if not lines:
        return "Exception"
    last = lines[-1]
    name = last.split(":", 1)[0].strip()
    return name if name.replace(".", "").replace("_", "").isalnum() else "Exception"
