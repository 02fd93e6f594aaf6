"""The board API that tests use: one connected MicroPython board.

``connect(url)`` opens any pyserial URL, gets to the raw REPL and returns a
:class:`Board`. Every call has a deadline (the board's ``timeout`` unless the
call names one); a runaway program is interrupted and the board stays usable.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .deadline import Deadline
from .errors import BoardRebooted, DeviceError
from .files import DeployResult, FileEntry, RemoteFiles, parse_value
from .rawrepl import Pacing, RawRepl, State
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
Pattern = str | bytes | re.Pattern[str] | re.Pattern[bytes]
_REBOOT_CODE = b"import machine\nmachine.reset()"
_INTERRUPTED = "KeyboardInterrupt"


def as_bytes_pattern(pattern: Pattern) -> re.Pattern[bytes]:
    """A bytes regex for the serial stream: a str pattern is matched on its UTF-8 encoding."""
    if isinstance(pattern, re.Pattern):
        source = pattern.pattern
        flags = pattern.flags & ~re.UNICODE
        return re.compile(source.encode("utf-8") if isinstance(source, str) else source, flags)
    return re.compile(pattern.encode("utf-8") if isinstance(pattern, str) else pattern)


def checked_timeout(seconds: float, name: str) -> float:
    """``seconds`` if it is a deadline; else a ValueError naming it. A negative timeout would
    still run the code and NaN would never expire; 0 means "now", as in Deadline."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValueError(f"{name}: timeout must be a number of seconds, got {seconds!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name}: timeout must be a finite number of seconds, 0 or more, got {seconds!r}")
    return float(seconds)


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
        # How ``hard_reset`` resets this board; the farm sets it from farm.yaml (reset command,
        # RTS, emulator). None: pulse RTS, as on most dev boards.
        self.reset_method: Callable[[], None] | None = None

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

    def close_port(self) -> None:
        """Close the port without a word to the board (it could not be reached)."""
        self._transport.close()

    def stop_on(self, stopping: threading.Event) -> None:
        """End any wait on this board with Stopped once ``stopping`` is set (from another thread)."""
        self._repl.stopping = stopping

    @property
    def raw_paste(self) -> bool | None:
        """Whether this connection uses raw-paste mode (None before the first exec)."""
        return self._repl.raw_paste

    # -- running code ----------------------------------------------------------

    def _deadline(self, timeout: float | None) -> Deadline:
        return Deadline(self._seconds(timeout))

    def _seconds(self, timeout: float | None) -> float:
        """The call's timeout (the board's when None), checked before anything is sent."""
        return checked_timeout(self.timeout if timeout is None else timeout, self.name)

    def _ready(self, deadline: Deadline, *, raise_background: bool = True) -> None:
        """Back at the idle raw prompt before an exchange: a background program is stopped
        (its error, if any, raised unless ``raise_background`` is False), a board that
        rebooted is entered again."""
        __tracebackhide__ = True
        if self._repl.state == State.RUNNING and raise_background:
            self.stop(deadline.remaining())
        elif self._repl.state == State.RUNNING:
            self._repl.finish(deadline)
        if self._repl.state == State.UNKNOWN:
            self.files.forget()  # it may have rebooted: helpers held in RAM are gone
            self._repl.enter(deadline)

    def exec(self, code: str | bytes, timeout: float | None = None) -> str:
        """Run code on the board; return what it printed. Raises DeviceError on an exception."""
        __tracebackhide__ = True  # a failing test shows the device's traceback, not ours
        source = code.encode("utf-8") if isinstance(code, str) else code
        deadline = self._deadline(timeout)
        try:
            self._ready(deadline)
            result = self._repl.exec(source, deadline)
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
        deadline = self._deadline(timeout)
        try:
            self._ready(deadline, raise_background=False)  # a program a test left running: wiped anyway
            out = self._repl.soft_reset(deadline)
        finally:
            self.files.forget()  # even a soft reset cut short may have cleared RAM
        return out.decode("utf-8", "replace")

    def interrupt(self, timeout: float | None = None) -> None:
        """Stop whatever runs (Ctrl-C) and return to an idle raw REPL."""
        self._repl.recover(self._seconds(timeout))

    @property
    def interrupt_failed(self) -> bool:
        """The last interrupt did not bring the prompt back (until the board answers again)."""
        return self._repl.interrupt_failed

    def enter_raw_repl(self, timeout: float | None = None) -> None:
        """Interrupt whatever runs and get to the raw REPL (what the board printed stays for ``expect``)."""
        self._repl.enter(self._deadline(timeout))

    def hard_reset_lines(self) -> None:
        """Pulse RTS (wired to EN/RESET on most dev boards); the lines end as they were."""
        self._transport.pulse_reset()

    # -- output the board prints on its own --------------------------------------

    def expect(self, pattern: Pattern, timeout: float | None = None) -> re.Match[bytes]:
        """Wait for ``pattern`` (a regex, str or bytes) in what the board printed outside any exec.

        Output is buffered from the moment it arrives (boot messages, a program
        from ``start``, ``main.py``); a match consumes it up to its end, so the
        next ``expect`` looks further on. Raises BoardTimeout showing the last
        output seen.
        """
        __tracebackhide__ = True
        compiled = as_bytes_pattern(pattern)
        return self._repl.expect(compiled, self._deadline(timeout), f"{compiled.pattern!r}")

    def expect_exact(self, text: str | bytes, timeout: float | None = None) -> re.Match[bytes]:
        """``expect`` for literal text."""
        __tracebackhide__ = True
        literal = text.encode("utf-8") if isinstance(text, str) else text
        return self._repl.expect(re.compile(re.escape(literal)), self._deadline(timeout), f"{literal!r}")

    @property
    def output(self) -> bytes:
        """What the board printed on its own that no ``expect`` has consumed yet."""
        return self._repl.console.pending()

    def start(self, code: str | bytes, timeout: float | None = None) -> None:
        """Run code in the background: returns once the board has it; read its output
        with ``expect``, end it with ``stop`` (the next exec stops it too)."""
        __tracebackhide__ = True
        deadline = self._deadline(timeout)
        self._ready(deadline)
        self._repl.start(code.encode("utf-8") if isinstance(code, str) else code, deadline)

    def stop(self, timeout: float | None = None) -> str:
        """Interrupt the background program (Ctrl-C) and return to the raw REPL.

        Returns what it printed (also left for ``expect``); raises DeviceError if
        it ended with an exception other than the KeyboardInterrupt sent here.
        """
        __tracebackhide__ = True
        if self._repl.state != State.RUNNING:
            return ""
        result = self._repl.finish(self._deadline(timeout))
        stdout = result.stdout.decode("utf-8", "replace").replace("\r\n", "\n")
        stderr = result.stderr.decode("utf-8", "replace").replace("\r\n", "\n")
        if stderr and not stderr.rstrip().splitlines()[-1].startswith(_INTERRUPTED):
            raise DeviceError(stderr, stdout, self.name)
        return stdout

    @property
    def running(self) -> bool:
        """Whether a program started with ``start`` has not been stopped yet."""
        return self._repl.state == State.RUNNING

    def write(self, data: str | bytes) -> None:
        """Send bytes to whatever reads the board's input (a program's ``input()``, the REPL)."""
        self._repl.write(data.encode("utf-8") if isinstance(data, str) else data)

    def reboot(self, timeout: float | None = None) -> None:
        """``machine.reset()``: returns at once; the boot output is left for ``expect``
        and the next exec enters the raw REPL again."""
        deadline = self._deadline(timeout)
        self._ready(deadline)
        self._repl.start(_REBOOT_CODE, deadline)
        self._repl.rebooting()
        self.files.forget()

    def hard_reset(self) -> None:
        """Reset the board the farm's way (reset command, RTS pulse, emulator reset): returns
        once it is done; the boot output is left for ``expect``, the next exec enters the raw REPL."""
        self._repl.rebooting()
        self.files.forget()
        (self.reset_method or self._transport.pulse_reset)()
        self._repl.rebooting()

    def reattach(self, transport: Transport) -> None:
        """Talk to the same board over a new connection (its emulator was restarted)."""
        with contextlib.suppress(Exception):
            self._transport.close()
        self._transport = transport
        self._repl.reattach(transport)
        self.files.forget()

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
        stopping: threading.Event | None = None,
    ) -> B:
        """Open a board at any pyserial URL and enter its raw REPL (``connect`` is this on Board).

        ``dtr`` / ``rts``: the modem lines' state while the port is open (both
        asserted by default, as mpremote does). ``stopping``: see ``stop_on``.
        """
        board = cls.attach(
            url, baudrate=baudrate, timeout=timeout, name=name, pacing=pacing, dtr=dtr, rts=rts, stopping=stopping
        )
        try:
            board.enter_raw_repl()
        except BaseException:
            board.close_port()
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
        stopping: threading.Event | None = None,
    ) -> B:
        """Open the port only: for a caller that gets to the raw REPL itself (or recovers the board first)."""
        checked_timeout(timeout, name or url)  # before the port is opened
        transport = open_transport(url, baudrate=baudrate, write_timeout=timeout, dtr=dtr, rts=rts)
        board = cls(transport, name=name or url, timeout=timeout, pacing=pacing)
        if stopping is not None:
            board.stop_on(stopping)
        return board


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
