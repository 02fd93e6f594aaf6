"""What every emulated board type shares: a child process serving a board on a local TCP port.

An emulated board is a real MicroPython as far as the protocol goes; its UART
is a TCP socket (``socket://127.0.0.1:PORT``). The process is tied to ours: it
gets SIGKILL if we die (``PR_SET_PDEATHSIG``), its stdin is a pipe from us, and
``stop()`` always reaps it, so no emulator outlives the run. A type says how to
run its process (``argv``) and what it needs installed (``check_installed``).
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import ClassVar, TypeVar

from ..board import connect
from ..deadline import Deadline
from ..errors import BoardError

START_ATTEMPTS = 5
START_SECONDS = 15.0  # a boot on a loaded host (CI, many boards on two cores) can take seconds
EXIT_SECONDS = 1.0  # an emulator that failed to come up, to end and say why
BOOT_SECONDS = 5.0  # the longest a start waits for the boot's own prompt before interrupting the boot
_Board = TypeVar("_Board", bound="EmulatedBoard")


class EmulatorError(BoardError):
    """The emulator or its image is missing, or the emulated board did not come up."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmulatedBoard:
    """One emulated board. ``start()`` returns once the board answers its raw REPL.

    ``firmware`` is the image the emulator runs (``None``: the type's default).
    """

    name: ClassVar[str]  # the farm.yaml ``emulator:`` value
    what: ClassVar[str]  # for messages: "an emulated micro:bit"
    keeps_connection: ClassVar[bool] = False  # hard_reset() keeps the serial connection (else: reconnect)
    # What the board prints when its boot (and any script the image runs at boot) is
    # done. A type that sets it holds its boot until the first connection, so the
    # start sees the whole boot and never interrupts it with the raw REPL's Ctrl-C.
    boot_prompt: ClassVar[bytes | None] = None
    _proc: subprocess.Popen[bytes] | None = None  # also when __init__ failed: stop() and __del__ rely on it

    def __init__(self, *, firmware: Path | None = None, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.firmware = firmware if firmware is not None else self.default_firmware()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the emulator; unnamed, so nothing is left on disk

    # -- what a type defines ---------------------------------------------------------

    @classmethod
    def default_firmware(cls) -> Path:
        raise NotImplementedError

    def check_installed(self) -> list[str]:
        """The command line's first words (the program, found), or EmulatorError naming what to install."""
        raise NotImplementedError

    def argv(self, program: list[str]) -> list[str]:
        """The whole command line that serves the board on ``self.host:self.port``."""
        raise NotImplementedError

    def hard_reset(self) -> None:
        """Like the RESET button: RAM cleared. By default the process is restarted."""
        if not self.running():
            raise EmulatorError(f"emulated board {self.url} is not running")
        self.stop()
        self.start()

    # -- shared ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def spawn(self) -> None:
        """Start the process without waiting for the board (see ``wait_ready``)."""
        program = self.check_installed()
        if self.port is None:
            self.port = free_port(self.host)
        if self._log.closed:  # stopped before: a fresh log for this start
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self._log.seek(0)
        self._log.truncate()
        self._proc = subprocess.Popen(
            self.argv(program),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            preexec_fn=_die_with_parent,
        )

    def wait_ready(self, timeout: float = START_SECONDS) -> None:
        """Wait until the board's raw REPL answers, or raise with the emulator's own words."""
        deadline = Deadline(timeout)
        while not deadline.expired():
            if not self.running():
                raise EmulatorError(f"{self.what} exited on {self.url}: {self._stderr()}")
            try:
                with socket.create_connection((self.host, self.port or 0), timeout=deadline.remaining()) as sock:
                    self._await_boot(sock, Deadline(min(BOOT_SECONDS, deadline.remaining())))
            except OSError:
                time.sleep(0.01)  # start-up only: the process has not bound its port yet
                continue
            if not self.running():  # it could not bind the port: what answered there is another program
                raise EmulatorError(f"{self.what} exited on {self.url}: {self._stderr()}")
            try:
                board = connect(self.url, timeout=max(0.5, deadline.remaining()), name=f"emulator:{self.port}")
            except BoardError as exc:
                if self._proc is not None:  # one that drops the connection as it exits takes a moment to end
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._proc.wait(timeout=EXIT_SECONDS)
                if self.running():
                    raise
                # It exited meanwhile (an image that does not load, say): its words, not the dropped connection.
                raise EmulatorError(f"{self.what} exited on {self.url}: {self._stderr()}") from exc
            board.close()
            return
        raise EmulatorError(f"{self.what} on {self.url} did not answer within {timeout:g}s")

    def _await_boot(self, sock: socket.socket, deadline: Deadline) -> None:
        """Read the boot's output until ``boot_prompt`` (at most until ``deadline``: an
        image whose boot script never ends is interrupted by the raw REPL after it)."""
        if self.boot_prompt is None:
            return
        seen = b""
        while not deadline.expired() and self.boot_prompt not in seen and self.running():
            sock.settimeout(max(0.01, min(0.1, deadline.remaining())))
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            if not data:
                return
            seen = seen[-64:] + data

    def start(self: _Board, timeout: float = START_SECONDS) -> _Board:
        """Start the process and wait for the board, retrying within ``timeout`` in all.

        Whatever goes wrong (the process exits, its port was taken, the board
        never answers), the process is stopped before the error leaves: a
        failed start never leaves an emulator behind.
        """
        deadline = Deadline(timeout)
        fixed_port = self.port is not None
        error: BoardError | None = None
        for _ in range(START_ATTEMPTS):
            self.spawn()
            try:
                self.wait_ready(deadline.remaining())
                return self
            except BoardError as exc:  # EmulatorError, or BoardTimeout/ConnectionLost from the raw REPL
                error = exc
                self.stop()
            except BaseException:
                self.stop()
                raise
            if fixed_port or deadline.expired():
                break
            self.port = None  # someone may have taken the port between our check and the bind
        raise EmulatorError(f"could not start {self.what} within {timeout:g}s: {error}") from error

    def pause(self) -> None:
        """Freeze the board (SIGSTOP), as a hard-faulted MCU goes silent."""
        if self._proc:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc:
            self._proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            self._log.close()  # no ResourceWarning for a run with -W error
            return
        if proc.stdin:
            proc.stdin.close()  # end of its stdin: a process that watches it exits by itself
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._log.close()

    def _stderr(self) -> str:
        if self._log.closed:
            return "(stopped)"
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace").strip()[-500:] or "(no output)"

    def __enter__(self: _Board) -> _Board:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        self.stop()
