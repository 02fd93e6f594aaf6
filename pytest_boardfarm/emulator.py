"""Emulated boards: the genuine micro:bit MicroPython firmware under QEMU.

An emulated board is a real MicroPython board as far as the protocol goes; its
UART is a TCP socket (``socket://127.0.0.1:PORT``). The process is tied to
ours: it gets SIGKILL if we die (``PR_SET_PDEATHSIG``) and ``stop()`` always
reaps it, so no emulator outlives the run.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from .board import connect
from .deadline import Deadline
from .errors import BoardError

FIRMWARE = Path("/usr/share/firmware-microbit-micropython/firmware.hex")
QEMU = "qemu-system-arm"
DEBIAN_PACKAGES = "qemu-system-arm firmware-microbit-micropython"
START_ATTEMPTS = 5


class EmulatorError(BoardError):
    """QEMU or the firmware is missing, or the emulated board did not come up."""


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_installed(qemu: str = QEMU, firmware: Path = FIRMWARE) -> str:
    """Path of the QEMU binary, or an error naming the packages to install."""
    binary = shutil.which(qemu)
    missing = [what for what, ok in ((qemu, binary), (str(firmware), firmware.is_file())) if not ok]
    if missing:
        raise EmulatorError(
            f"cannot start an emulated micro:bit: {', '.join(missing)} not found; "
            f"install them with: apt-get install {DEBIAN_PACKAGES}"
        )
    assert binary is not None
    return binary


class MicrobitEmulator:
    """One QEMU micro:bit. ``start()`` returns once the board answers its raw REPL."""

    def __init__(
        self, *, port: int | None = None, host: str = "127.0.0.1", firmware: Path = FIRMWARE, qemu: str = QEMU
    ) -> None:
        self.host = host
        self.port = port
        self.firmware = firmware
        self.qemu = qemu
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the emulator; unnamed, so nothing is left on disk

    @property
    def url(self) -> str:
        return f"socket://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _argv(self, binary: str) -> list[str]:
        return [
            binary, "-M", "microbit", "-display", "none", "-monitor", "stdio",
            "-device", f"loader,file={self.firmware}",
            "-serial", f"tcp:{self.host}:{self.port},server=on,wait=off,nodelay=on",
        ]  # fmt: skip

    def spawn(self) -> None:
        """Start the process without waiting for the board (see ``wait_ready``)."""
        binary = check_installed(self.qemu, self.firmware)
        if self.port is None:
            self.port = free_port(self.host)
        self._proc = subprocess.Popen(
            self._argv(binary),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            preexec_fn=_die_with_parent,
        )

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until the board's raw REPL answers, or raise with QEMU's own words."""
        deadline = Deadline(timeout)
        while not deadline.expired():
            if not self.running():
                raise EmulatorError(f"QEMU exited on {self.url}: {self._stderr()}")
            try:
                with socket.create_connection((self.host, self.port or 0), timeout=deadline.remaining()):
                    pass
            except OSError:
                time.sleep(0.01)  # start-up only: QEMU has not bound its port yet
                continue
            board = connect(self.url, timeout=max(0.5, deadline.remaining()), name=f"emulator:{self.port}")
            board.close()
            return
        raise EmulatorError(f"emulated micro:bit on {self.url} did not answer within {timeout:g}s")

    def start(self, timeout: float = 15.0) -> MicrobitEmulator:
        """Start QEMU and wait for the board, retrying within ``timeout`` in all.

        Whatever goes wrong (QEMU exits, its port was taken, the firmware never
        answers), the process is stopped before the error leaves: a failed start
        never leaves a QEMU behind.
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
            self.port = None  # someone may have taken the port between our check and QEMU's bind
        raise EmulatorError(f"could not start an emulated micro:bit within {timeout:g}s: {error}") from error

    def hard_reset(self) -> None:
        """Reset the emulated chip (RAM cleared, flash kept), like the RESET button."""
        if not self.running() or self._proc is None or self._proc.stdin is None:
            raise EmulatorError(f"emulated board {self.url} is not running")
        self._proc.stdin.write(b"system_reset\n")
        self._proc.stdin.flush()

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
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a paused QEMU cannot act on SIGTERM
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdin:
            proc.stdin.close()

    def _stderr(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace").strip()[-500:] or "(no output)"

    def __enter__(self) -> MicrobitEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        self.stop()


def start_many(count: int, timeout: float = 30.0) -> list[MicrobitEmulator]:
    """Start ``count`` boards in parallel; all or none (started ones are stopped on error)."""
    deadline = Deadline(timeout)
    boards = [MicrobitEmulator() for _ in range(count)]
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
