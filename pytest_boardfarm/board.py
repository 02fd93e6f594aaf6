"""The board API that tests use: one connected MicroPython board.

``connect(url)`` opens any pyserial URL, gets to the raw REPL and returns a
:class:`Board`. Every call has a deadline (the board's ``timeout`` unless the
call names one); a runaway program is interrupted and the board stays usable.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .deadline import Deadline
from .errors import BoardRebooted, DeviceError
from .files import DeployResult, FileEntry, RemoteFiles, parse_value
from .rawrepl import Pacing, RawRepl
from .transcript import Transcript
from .transport import Transport, open_transport

_INFO_CODE = """\
import sys, gc
try:
    import os
    _bf_v = os.uname().version
except Exception:
    _bf_v = sys.version
try:
    import machine
    _bf_u = ''.join(['%02x' % c for c in machine.unique_id()])
except Exception:
    _bf_u = ''
gc.collect()
print(repr((sys.platform, _bf_v, _bf_u, gc.mem_free())))
del _bf_v, _bf_u
"""


B = TypeVar("B", bound="Board")


@dataclass(frozen=True)
class BoardInfo:
    platform: str
    firmware: str
    unique_id: str
    mem_free: int


class Board:
    """A MicroPython board at its raw REPL. Use as a context manager."""

    def __init__(self, transport: Transport, *, name: str, timeout: float, pacing: Pacing | None = None) -> None:
        self.name = name
        self.timeout = timeout
        self.transcript = Transcript()
        self._transport = transport
        self._repl = RawRepl(transport, self.transcript, pacing=pacing, label=name)
        self.files = RemoteFiles(self.exec, lambda: self._repl.statement_room, self._repl.recover)

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> Board:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Leave the board at its friendly REPL and close the port."""
        with contextlib.suppress(Exception):  # the port may already be gone; closing must not fail
            self._repl.leave()
        self._transport.close()

    @property
    def raw_paste(self) -> bool | None:
        """Whether this connection uses raw-paste mode (None before the first exec)."""
        return self._repl.raw_paste

    # -- running code ----------------------------------------------------------

    def _deadline(self, timeout: float | None) -> Deadline:
        return Deadline(self.timeout if timeout is None else timeout)

    def exec(self, code: str | bytes, timeout: float | None = None) -> str:
        """Run code on the board; return what it printed. Raises DeviceError on an exception."""
        __tracebackhide__ = True  # a failing test shows the device's traceback, not ours
        source = code.encode("utf-8") if isinstance(code, str) else code
        try:
            result = self._repl.exec(source, self._deadline(timeout))
        except BoardRebooted:
            self.files.forget()  # the helpers it held in RAM are gone
            raise
        stdout = result.stdout.decode("utf-8", "replace").replace("\r\n", "\n")
        if result.stderr:
            raise DeviceError(result.stderr.decode("utf-8", "replace").replace("\r\n", "\n"), stdout, self.name)
        return stdout

    def eval(self, expr: str, timeout: float | None = None) -> Any:
        """Evaluate an expression on the board and return its value (parsed, never run here)."""
        __tracebackhide__ = True
        return parse_value(self.exec(f"print(repr({expr}))", timeout), expr)

    def run(self, path: str | Path, timeout: float | None = None) -> str:
        """Run a local script from RAM (nothing is written to the board's flash)."""
        return self.exec(Path(path).read_bytes(), timeout)

    def soft_reset(self, timeout: float | None = None) -> str:
        """Soft reset through the raw REPL: clears RAM; main.py does not run."""
        try:
            out = self._repl.soft_reset(self._deadline(timeout))
        finally:
            self.files.forget()  # even a soft reset cut short may have cleared RAM
        return out.decode("utf-8", "replace")

    def interrupt(self, timeout: float | None = None) -> None:
        """Stop whatever runs (Ctrl-C) and return to an idle raw REPL."""
        self._repl.recover(self.timeout if timeout is None else timeout)

    @property
    def interrupt_failed(self) -> bool:
        """The last interrupt did not bring the prompt back (until the board answers again)."""
        return self._repl.interrupt_failed

    def enter_raw_repl(self, timeout: float | None = None) -> None:
        self._repl.enter(self._deadline(timeout))

    def hard_reset_lines(self) -> None:
        """Pulse RTS (wired to EN/RESET on most dev boards); the lines end as they were."""
        self._transport.pulse_reset()

    @property
    def info(self) -> BoardInfo:
        """Platform, firmware version, unique id (hex) and free heap, asked of the board now."""
        value = parse_value(self.exec(_INFO_CODE), "board info")
        platform, firmware, uid, mem_free = value
        return BoardInfo(str(platform), str(firmware), str(uid), int(mem_free))

    # -- files -----------------------------------------------------------------

    def put(self, local: str | Path | bytes, remote: str) -> None:
        """Copy a local file (or bytes) to the board; verified after writing."""
        data = local if isinstance(local, bytes) else Path(local).read_bytes()
        self.files.put(data, remote)

    def get(self, remote: str) -> bytes:
        return self.files.get(remote)

    def ls(self, path: str = "/") -> list[FileEntry]:
        return self.files.ls(path)

    def remove(self, path: str) -> None:
        self.files.remove(path)

    def mkdir(self, path: str) -> None:
        self.files.mkdir(path)

    def exists(self, path: str) -> bool:
        return self.files.exists(path)

    def deploy(self, local_dir: str | Path, remote_dir: str = "/") -> DeployResult:
        return self.files.deploy(Path(local_dir), remote_dir)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @classmethod
    def open(
        cls: type[B],
        url: str,
        *,
        baudrate: int = 115200,
        timeout: float = 10.0,
        name: str | None = None,
        pacing: Pacing | None = None,
        dtr: bool = True,
        rts: bool = True,
    ) -> B:
        """Open a board at any pyserial URL and enter its raw REPL (``connect`` is this on Board).

        ``dtr`` / ``rts``: the modem lines' state while the port is open (both
        asserted by default, as mpremote does).
        """
        board = cls.attach(url, baudrate=baudrate, timeout=timeout, name=name, pacing=pacing, dtr=dtr, rts=rts)
        try:
            board.enter_raw_repl()
        except BaseException:
            board._transport.close()
            raise
        return board

    @classmethod
    def attach(
        cls: type[B],
        url: str,
        *,
        baudrate: int = 115200,
        timeout: float = 10.0,
        name: str | None = None,
        pacing: Pacing | None = None,
        dtr: bool = True,
        rts: bool = True,
    ) -> B:
        """Open the port only: for a caller that gets to the raw REPL itself (or recovers the board first)."""
        transport = open_transport(url, baudrate=baudrate, write_timeout=timeout, dtr=dtr, rts=rts)
        return cls(transport, name=name or url, timeout=timeout, pacing=pacing)


def connect(
    url: str,
    *,
    baudrate: int = 115200,
    timeout: float = 10.0,
    name: str | None = None,
    pacing: Pacing | None = None,
    dtr: bool = True,
    rts: bool = True,
) -> Board:
    """Open a board at any pyserial URL and enter its raw REPL."""
    return Board.open(url, baudrate=baudrate, timeout=timeout, name=name, pacing=pacing, dtr=dtr, rts=rts)
