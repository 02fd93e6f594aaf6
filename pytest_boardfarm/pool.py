"""Board allocation: lock, start or find, connect, check, deploy; then hand out.

This is the farm layer, with no pytest in it. A board is prepared once per
process (the xdist worker that runs its tests, or the only process) and kept
until ``release_all()``. A board that cannot be had is remembered with its
reason, so its remaining tests fail fast with the same message instead of
waiting again.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from serial.tools import list_ports

from . import commands
from .board import Board, BoardInfo
from .deadline import Deadline
from .emulators import EMULATORS, EmulatedBoard
from .errors import BoardError
from .files import DeployResult
from .health import HARD_RESET_SECONDS, Ladder, RecoveryLog, probe
from .inventory import BoardSpec, Farm
from .locks import BoardLock, LockTimeout
from .rawrepl import Pacing

MAX_RECOVERIES = 3  # a board that needs more than this in one run is quarantined
PORT_RETURN_SECONDS = 10.0  # how long reconnecting waits for a USB port to re-enumerate
PORT_POLL_SECONDS = 0.1


class FarmBoard(Board):
    """A board from the farm: the board API, plus its farm.yaml entry."""

    spec: BoardSpec

    @property
    def platform(self) -> str:
        return self.spec.platform

    @property
    def tags(self) -> tuple[str, ...]:
        return self.spec.tags

    @property
    def properties(self) -> dict[str, str]:
        return self.spec.properties


class BoardUnavailable(BoardError):
    """The board could not be allocated: missing, locked, silent, broken or quarantined."""


class Quarantined(BoardUnavailable):
    """The board answered badly, and the recovery ladder could not bring it back."""


@dataclass
class Allocated:
    """A board this process holds, with what it learned while preparing it."""

    spec: BoardSpec
    board: FarmBoard
    url: str
    lock: BoardLock | None = None
    emulator: EmulatedBoard | None = None
    info: BoardInfo | None = None
    deployed: DeployResult | None = None
    last_module: str | None = None
    recoveries: list[RecoveryLog] = field(default_factory=list)


def find_serial_number(serial_number: str) -> str:
    """The device path of the USB serial port with this serial number."""
    ports = list(list_ports.comports())
    for port in ports:
        if port.serial_number == serial_number:
            return str(port.device)
    present = ", ".join(f"{p.device} ({p.serial_number})" for p in ports if p.serial_number) or "none"
    raise BoardUnavailable(f"no USB serial device with serial number {serial_number!r}; present: {present}")


def _find_port(spec: BoardSpec) -> str:
    if spec.serial_number and not spec.port:
        return find_serial_number(spec.serial_number)
    port = spec.port or ""
    if "://" not in port and not os.path.exists(port):
        raise BoardUnavailable(f"no device at {port}")
    return port


def _port_for(spec: BoardSpec, wait: float = 0.0) -> str:
    """Where a real board is now: its port, or the USB device with its serial number.

    A USB board is gone for a second or more after a hub power cycle, so with
    ``wait`` a missing device path or serial number is looked for again until
    it is back or ``wait`` seconds have passed.
    """
    deadline = Deadline(wait)
    while True:
        try:
            return _find_port(spec)
        except BoardUnavailable as exc:
            if deadline.expired():
                if not wait:
                    raise
                raise BoardUnavailable(f"{exc} (waited {wait:g}s for it to come back)") from None
        time.sleep(min(PORT_POLL_SECONDS, deadline.remaining()))


def _lock_key(spec: BoardSpec) -> str:
    """What a board's lock is named after: what is physically shared."""
    return spec.serial_number or spec.port or spec.name


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
            how = "quarantined" if isinstance(exc, Quarantined) else "unavailable"
            self.unavailable[name] = f"board {name} {how}: {exc}"
            raise BoardUnavailable(self.unavailable[name]) from exc
        return self.held[name]

    def is_free(self, name: str) -> bool:
        """Could this process have the board now without waiting for another run?"""
        spec = self.farm.get(name)
        if spec.emulator or name in self.held:  # an emulated board is this run's alone
            return True
        return BoardLock(self.farm.lock_dir, _lock_key(spec)).is_free()

    def _prepare(self, spec: BoardSpec) -> Allocated:
        lock = None
        emulator = None
        if not spec.emulator:  # an emulated board belongs to this run alone
            lock = BoardLock(self.farm.lock_dir, _lock_key(spec), run=self.run_id)
            lock.acquire(self.lock_timeout)
        try:
            if spec.emulator:
                emulator = EMULATORS[spec.emulator]().start()
                url = emulator.url
            else:
                url = _port_for(spec)
            held = Allocated(spec, self._connect(spec, url, enter=False), url, lock, emulator)
            try:
                self._bring_up(held)
            except BaseException:
                held.board.close()
                raise
        except BaseException:
            if emulator:
                emulator.stop()
            if lock:
                lock.release()
            raise
        return held

    def _bring_up(self, held: Allocated) -> None:
        """Get the board answering and naming its firmware, then deploy.

        A board left in a bad state by an earlier run (a program that ignores
        Ctrl-C, a heap full of garbage, a half-sent source) gets the same
        recovery ladder as during a run, checked by asking for its info; if
        that fails too, the board is quarantined with what was tried.
        """
        try:
            held.board.enter_raw_repl()
            held.info = held.board.info  # health check: answers, names its firmware
        except BoardError as exc:

            def check(board: Board) -> None:
                held.info = board.info

            log = self._ladder(held, check).climb(held.spec.name)
            held.recoveries.append(log)
            if not log.recovered:
                raise Quarantined(f"{exc}; the recovery ladder did not bring it back\n{log.describe()}") from None
        if held.spec.deploy:
            held.deployed = held.board.deploy(held.spec.deploy)

    @staticmethod
    def _connect(spec: BoardSpec, url: str, *, enter: bool = True) -> FarmBoard:
        pacing = Pacing(spec.write_window)
        opener = FarmBoard.open if enter else FarmBoard.attach
        board = opener(
            url, baudrate=spec.baudrate, timeout=spec.timeout, name=spec.name, pacing=pacing, dtr=spec.dtr, rts=spec.rts
        )
        board.spec = spec
        return board

    # -- health ------------------------------------------------------------------

    def recover(self, name: str) -> RecoveryLog:
        """Climb the recovery ladder; quarantine the board if it fails or is needed too often."""
        held = self.held[name]
        log = self._ladder(held).climb(name)
        held.recoveries.append(log)
        if not log.recovered:
            self.quarantine(name, f"did not recover ({'; '.join(s.name for s in log.steps)} tried)")
        elif len(held.recoveries) > MAX_RECOVERIES:
            self.quarantine(name, f"needed recovery {len(held.recoveries)} times in this run")
        return log

    def quarantine(self, name: str, reason: str) -> None:
        """Take the board out of the run: its remaining tests error with ``reason``."""
        self.release(name)
        self.unavailable[name] = f"board {name} quarantined: {reason}"

    def _ladder(self, held: Allocated, check: Callable[[Board], object] = probe) -> Ladder:
        spec = held.spec

        def hard_reset_command() -> str:
            values = {
                "name": spec.name,
                "port": held.url,
                "serial_number": spec.serial_number or "",
                "platform": spec.platform,
            }
            result = commands.run(spec.reset, values, HARD_RESET_SECONDS)
            return f"ran {' '.join(result.argv)}"

        def pulse_rts() -> str:
            held.board.hard_reset_lines()
            return "pulsed RTS"

        def restart_emulator() -> str:
            assert held.emulator is not None
            held.board.close()
            held.emulator.stop()
            held.emulator.start()  # same port and image; the emulated flash starts empty
            return "restarted the emulator"

        def reconnect() -> None:
            with contextlib.suppress(Exception):
                held.board.close()
            if held.emulator is None:  # a USB board comes back after a while, maybe under another path
                held.url = _port_for(spec, PORT_RETURN_SECONDS)
            held.board = self._connect(spec, held.url)
            if spec.deploy:
                held.deployed = held.board.deploy(spec.deploy)

        hard_reset = None
        if spec.reset:
            hard_reset = hard_reset_command
        elif spec.rts_reset:
            hard_reset = pulse_rts
        elif held.emulator is not None:
            hard_reset = restart_emulator
        return Ladder(lambda: held.board, hard_reset, reconnect, check)

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
