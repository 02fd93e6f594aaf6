"""Board allocation: lock, start or find, connect, check, deploy; then hand out.

This is the farm layer, with no pytest in it. A board is prepared once per
process (the xdist worker that runs its tests, or the only process) and kept
until ``release_all()``. A board that cannot be had is remembered with its
reason, so its remaining tests fail fast with the same message instead of
waiting again.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from serial.tools import list_ports

from .board import Board, BoardInfo, connect
from .emulator import MicrobitEmulator
from .errors import BoardError
from .files import DeployResult
from .inventory import BoardSpec, Farm
from .locks import BoardLock, LockTimeout
from .rawrepl import Pacing


class BoardUnavailable(BoardError):
    """The board could not be allocated: missing, locked, silent or broken."""


@dataclass
class Allocated:
    """A board this process holds, with what it learned while preparing it."""

    spec: BoardSpec
    board: Board
    url: str
    lock: BoardLock | None = None
    emulator: MicrobitEmulator | None = None
    info: BoardInfo | None = None
    deployed: DeployResult | None = None
    last_module: str | None = None
    setup_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def find_serial_number(serial_number: str) -> str:
    """The device path of the USB serial port with this serial number."""
    ports = list(list_ports.comports())
    for port in ports:
        if port.serial_number == serial_number:
            return str(port.device)
    present = ", ".join(f"{p.device} ({p.serial_number})" for p in ports if p.serial_number) or "none"
    raise BoardUnavailable(f"no USB serial device with serial number {serial_number!r}; present: {present}")


class BoardPool:
    def __init__(self, farm: Farm, *, lock_timeout: float = 60.0, run_id: str = "") -> None:
        self.farm = farm
        self.lock_timeout = lock_timeout
        self.run_id = run_id
        self.held: dict[str, Allocated] = {}
        self.unavailable: dict[str, str] = {}

    def acquire(self, name: str) -> Allocated:
        """The prepared board, or BoardUnavailable with the reason (remembered)."""
        if name in self.held:
            return self.held[name]
        if name in self.unavailable:
            raise BoardUnavailable(self.unavailable[name])
        spec = self.farm.get(name)
        try:
            self.held[name] = self._prepare(spec)
        except (BoardError, LockTimeout, OSError) as exc:
            self.unavailable[name] = f"board {name} unavailable: {exc}"
            raise BoardUnavailable(self.unavailable[name]) from exc
        return self.held[name]

    def _prepare(self, spec: BoardSpec) -> Allocated:
        start = time.monotonic()
        lock = None
        emulator = None
        if not spec.emulator:  # an emulated board belongs to this run alone
            lock = BoardLock(self.farm.lock_dir, spec.serial_number or spec.port or spec.name, run=self.run_id)
            lock.acquire(self.lock_timeout)
        try:
            if spec.emulator:
                emulator = MicrobitEmulator().start()
                url = emulator.url
            elif spec.serial_number and not spec.port:
                url = find_serial_number(spec.serial_number)
            else:
                url = spec.port or ""
            board = connect(
                url, baudrate=spec.baudrate, timeout=spec.timeout, name=spec.name, pacing=Pacing(spec.write_window)
            )
            held = Allocated(spec, board, url, lock, emulator)
            try:
                held.info = board.info  # health check: answers, names its firmware
                if spec.deploy:
                    held.deployed = board.deploy(spec.deploy)
            except BaseException:
                board.close()
                raise
        except BaseException:
            if emulator:
                emulator.stop()
            if lock:
                lock.release()
            raise
        held.setup_seconds = time.monotonic() - start
        return held

    def release(self, name: str) -> None:
        held = self.held.pop(name, None)
        if held is None:
            return
        with contextlib.suppress(Exception):
            held.board.close()
        if held.emulator:
            held.emulator.stop()
        if held.lock:
            held.lock.release()

    def release_all(self) -> None:
        for name in list(self.held):
            self.release(name)
