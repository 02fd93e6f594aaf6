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
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import commands, flashing
from .board import Board, BoardInfo
from .deadline import Deadline
from .emulators import EMULATORS, EmulatedBoard
from .emulators.base import START_SECONDS
from .errors import BoardError
from .files import DeployResult
from .health import HARD_RESET_SECONDS, Ladder, RecoveryLog, probe
from .inventory import BoardSpec, Farm
from .locks import BoardLock, LockTimeout
from .places import Coordinator, PlaceError, PlaceLock
from .rawrepl import Pacing
from .transport import open_transport

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

MAX_RECOVERIES = 3  # a board that needs more than this in one run is quarantined
PORT_RETURN_SECONDS = 10.0  # how long reconnecting waits for a USB port to re-enumerate
PORT_POLL_SECONDS = 0.1
FLASH_SECONDS = 600.0  # the longest a flasher command may run (a big image over a slow bootloader)
FLASH_PORT_SECONDS = 30.0  # how long a flashed board's port may take to come back


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
    lock: BoardLock | PlaceLock | None = None
    emulator: EmulatedBoard | None = None
    info: BoardInfo | None = None
    deployed: DeployResult | None = None
    last_module: str | None = None  # the module of the last test run on it (None: no test yet here)
    recoveries: list[RecoveryLog] = field(default_factory=list)
    flashed: flashing.Outcome | None = None


def find_serial_number(serial_number: str) -> str:
    """The device path of the USB serial port with this serial number."""
    from serial.tools import list_ports  # only farms with serial numbers: not every process

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


class _EmulatorTarget:
    """An emulated board: flashing restarts its emulator on the image.

    Its emulator lives as long as this process, so nothing flashed before can
    be on it: it is always flashed (started on the image), never skipped.
    """

    keeps_image = False

    def __init__(self, pool: BoardPool, spec: BoardSpec) -> None:
        self.pool = pool
        self.spec = spec
        self.name = spec.name
        self.emulator: EmulatedBoard | None = None

    @property
    def url(self) -> str:
        assert self.emulator is not None
        return self.emulator.url

    def install(self, image: Path) -> None:
        self.stop()
        self.emulator = EMULATORS[self.spec.emulator or ""](firmware=image)
        # A boot is not one of the board's operations: its deadline is never shorter than
        # any other emulator start's, whatever short timeout farm.yaml gives the board.
        self.emulator.start(timeout=max(self.spec.timeout, START_SECONDS))  # a failed start leaves no QEMU behind

    def connect(self) -> FarmBoard:
        if self.emulator is None or not self.emulator.running():
            raise flashing.FlashError(f"emulated board {self.name} is not started")
        return self.pool._connect(self.spec, self.url)

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None


class _CommandTarget:
    """A real board: flashing runs farm.yaml's ``flash`` command, then waits for the port."""

    emulator = None
    keeps_image = True

    def __init__(self, pool: BoardPool, spec: BoardSpec) -> None:
        self.pool = pool
        self.spec = spec
        self.name = spec.name
        self.url = spec.port or ""

    def install(self, image: Path) -> None:
        with contextlib.suppress(BoardUnavailable):
            self.url = _port_for(self.spec)
        values = {**_command_values(self.spec, self.url), "image": str(image)}
        commands.run(self.spec.flash, values, FLASH_SECONDS, self.pool.stopping)
        self.url = _port_for(self.spec, FLASH_PORT_SECONDS)  # USB boards re-enumerate after a flash

    def connect(self) -> FarmBoard:
        self.url = _port_for(self.spec)
        return self.pool._connect(self.spec, self.url)

    def stop(self) -> None:
        pass


def _command_values(spec: BoardSpec, port: str) -> dict[str, str]:
    """What a farm command's template fields stand for (commands.FIELDS), for this board now."""
    return {"name": spec.name, "port": port, "serial_number": spec.serial_number or "", "platform": spec.platform}


def _quietly(question: Callable[[], bool]) -> bool:
    """A yes/no that is no when it cannot be answered (a coordinator gone: the ladder goes on without)."""
    try:
        return question()
    except BoardError:
        return False


def _lock_key(spec: BoardSpec) -> str:
    """What a board's lock is named after: what is physically shared."""
    return spec.serial_number or spec.port or spec.name


class BoardPool:
    def __init__(
        self,
        farm: Farm,
        *,
        lock_timeout: float = 60.0,
        run_id: str = "",
        flash: bool = False,
        force: bool = False,
        deploy: bool = True,
        log: Callable[[str], None] = lambda _: None,
        notice: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.farm = farm
        self.lock_timeout = lock_timeout
        self.run_id = run_id
        self.flash = flash  # put each board's farm.yaml firmware on it before handing it out
        self.force = force  # flash even a board that proves it runs the image
        self.deploy = deploy  # copy farm.yaml's 'deploy' tree on bring-up (``boardfarm exec`` does not)
        self.log = log  # progress while flashing (the command line prints it)
        self.notice = notice  # what the user must hear of: a place taken over, a place that could not be released
        self.held: dict[str, Allocated] = {}
        self.unavailable: dict[str, str] = {}
        self.flashed: dict[str, flashing.Outcome] = {}  # what flashing did, per board, in this process
        self._workers: ThreadPoolExecutor | None = None
        self._coordinator: Coordinator | None = None  # this process's labgrid session, opened for the first place
        self._coordinator_error: PlaceError | None = None  # why it could not be opened (tried once per process)
        self._coordinator_opening = threading.Lock()  # boards are prepared in threads
        # Set by a command stopped by Ctrl-C (which reaches its main thread only): the threads that
        # wait for a lock or on a board end their waits with Stopped, and Ctrl-C the board.
        self.stopping = threading.Event()

    def acquire_many(self, names: Iterable[str]) -> None:
        """Prepare several boards at once (each flashes in its own thread); errors are
        remembered per board, as ``acquire`` does, and raised when a test asks."""
        todo = [name for name in dict.fromkeys(names) if name not in self.held and name not in self.unavailable]
        if not todo:
            return

        def one(name: str) -> None:
            with contextlib.suppress(BoardUnavailable):
                self.acquire(name)

        from concurrent.futures import ThreadPoolExecutor  # only when flashing without xdist

        # The threads live until release_all(): an emulator started in a thread is
        # killed when that thread ends (PR_SET_PDEATHSIG follows the thread, not the process).
        self._workers = self._workers or ThreadPoolExecutor(max_workers=64, thread_name_prefix="boardfarm-prepare")
        workers = [self._workers.submit(one, name) for name in todo]
        try:
            for work in workers:
                work.result()
        except BaseException:  # Ctrl-C or SIGTERM, which only this thread gets: the others stop
            self.stopping.set()
            raise

    def acquire(self, name: str) -> Allocated:
        """The prepared board, or BoardUnavailable with the reason (remembered)."""
        if name in self.held:
            return self.held[name]
        if name in self.unavailable:
            raise BoardUnavailable(self.unavailable[name])
        spec = self.farm.get(name)
        try:
            self.held[name] = self._prepare(spec)
            self.held[name].board.reset_method = self._reset_method(self.held[name])
        except (BoardError, LockTimeout, OSError) as exc:
            how = "quarantined" if isinstance(exc, Quarantined) else "unavailable"
            self.unavailable[name] = f"board {name} {how}: {exc}"
            raise BoardUnavailable(self.unavailable[name]) from exc
        return self.held[name]

    def acquire_together(self, names: Sequence[str]) -> list[Allocated]:
        """All these boards, or none (BoardUnavailable, and none of them is kept).

        Locks are taken in one global order (by lock key), and before waiting for
        any, every locked board held out of that order is released: so two runs
        that each need several boards never hold one while waiting for one the
        other holds. Emulated boards have no lock (they are this process's own)
        and are kept.
        """
        order = sorted(dict.fromkeys(names), key=lambda name: _lock_key(self.farm.get(name)))
        locked = [name for name in order if not self.farm.get(name).emulator]
        held_locked = [name for name in self.held if not self.farm.get(name).emulator]
        if set(held_locked) != set(locked[: len(held_locked)]):  # holding one we would take later: let go first
            for name in held_locked:
                self.release(name)
        try:
            return [self.acquire(name) for name in order]
        except BoardUnavailable:
            for name in order:
                self.release(name)
            raise

    def is_free(self, name: str) -> bool:
        """Could this process have the board now without waiting for another run?"""
        spec = self.farm.get(name)
        if spec.emulator or name in self.held:  # an emulated board is this run's alone
            return True
        if spec.place:
            try:
                return self._place_lock(spec.place).is_free()
            except PlaceError:
                return True  # acquire() says why the place cannot be had
        return BoardLock(self.farm.lock_dir, _lock_key(spec)).is_free()

    def lock_of(self, name: str) -> BoardLock | None:
        """The board's lock, not taken (None for an emulated board, which is each run's own)."""
        spec = self.farm.get(name)
        return None if spec.emulator else BoardLock(self.farm.lock_dir, _lock_key(spec), run=self.run_id)

    def port_of(self, name: str) -> str:
        """Where the real board is now (its port, or its serial number's device); BoardUnavailable if absent."""
        return _port_for(self.farm.get(name))

    @contextlib.contextmanager
    def port_held(self, name: str) -> Iterator[str]:
        """The board's lock and port, without connecting or touching the board.

        For a console (``boardfarm monitor`` / ``repl``) that must not interrupt
        what runs; an emulated board is started for the while, a place acquired.
        """
        spec = self.farm.get(name)
        lock = self._place_lock(spec.place) if spec.place else self.lock_of(name)
        if lock is not None:
            lock.acquire(self.lock_timeout)
        emulator = None
        try:
            if spec.emulator:
                emulator = EMULATORS[spec.emulator]().start()
                yield emulator.url
            elif isinstance(lock, PlaceLock):
                yield lock.endpoint().url
            else:
                yield _port_for(spec)
        finally:
            if emulator is not None:
                emulator.stop()
            if lock is not None:
                lock.release()

    def hard_reset(self, name: str) -> str:
        """The recovery ladder's hard step alone, then reconnect and check: ``boardfarm reset --hard``."""
        held = self.held[name]
        return self._ladder(held).hard_reset()

    def _place_lock(self, place: str) -> PlaceLock:
        """A place on the farm's labgrid coordinator (one session per process, opened on first use).

        A coordinator that cannot be reached is not tried again for each place and question:
        one that never answers costs 20 s a try."""
        with self._coordinator_opening:
            if self._coordinator_error is not None:
                raise PlaceError(str(self._coordinator_error))
            if self._coordinator is None:
                assert self.farm.coordinator is not None  # inventory.py refuses a place without one
                try:
                    self._coordinator = Coordinator(self.farm.coordinator)
                except PlaceError as exc:
                    self._coordinator_error = exc
                    raise
            return PlaceLock(self._coordinator, place, self.notice)

    def _prepare(self, spec: BoardSpec) -> Allocated:
        lock: BoardLock | PlaceLock | None = None
        emulator = None
        if spec.place:  # a board on another host: its labgrid place
            lock = self._place_lock(spec.place)
            lock.acquire(self.lock_timeout, self.stopping)
            if lock.took_over:
                self.notice(
                    f"{spec.name}: took place {spec.place} over from {lock.took_over}, a run that no longer exists"
                )
        elif not spec.emulator:  # an emulated board belongs to this run alone
            lock = BoardLock(self.farm.lock_dir, _lock_key(spec), run=self.run_id)
            lock.acquire(self.lock_timeout, self.stopping)
        try:
            if self.flash and spec.firmware is not None:
                held = self._flash(spec, lock)
                emulator = held.emulator
            else:
                if spec.emulator:
                    emulator = EMULATORS[spec.emulator]().start()
                    url = emulator.url
                elif isinstance(lock, PlaceLock):
                    url = lock.endpoint().url
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

    def _flash(self, spec: BoardSpec, lock: BoardLock | PlaceLock | None) -> Allocated:
        """Flash (or prove) the board's firmware; the board connected, or an error that
        says which image failed, why, and what the board runs now."""
        assert spec.firmware is not None
        target = _EmulatorTarget(self, spec) if spec.emulator else _CommandTarget(self, spec)
        try:
            outcome, board = flashing.ensure(target, spec.firmware, force=self.force, log=self.log)
        except BaseException:
            target.stop()
            raise
        self.flashed[spec.name] = outcome
        if board is None:
            target.stop()
            raise Quarantined(f"flashing failed: {outcome.describe()}")
        if not outcome.ok:  # rolled back: the board works, but not on the firmware the tests are for
            board.close()
            target.stop()
            raise BoardUnavailable(f"not tested: {outcome.describe()}")
        assert isinstance(board, FarmBoard)
        return Allocated(spec, board, target.url, lock, target.emulator, flashed=outcome)

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
        if held.spec.deploy and self.deploy:
            held.deployed = held.board.deploy(held.spec.deploy)

    def _connect(self, spec: BoardSpec, url: str, *, enter: bool = True) -> FarmBoard:
        opener = FarmBoard.open if enter else FarmBoard.attach
        board = opener(
            url,
            baudrate=spec.baudrate,
            timeout=spec.timeout,
            name=spec.name,
            pacing=Pacing(spec.write_window),
            dtr=spec.dtr,
            rts=spec.rts,
            stopping=self.stopping,
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
            result = commands.run(spec.reset, _command_values(spec, held.url), HARD_RESET_SECONDS, self.stopping)
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
            if isinstance(held.lock, PlaceLock):  # its exporter may have gone: the coordinator says
                held.url = held.lock.endpoint().url
            elif held.emulator is None:  # a USB board comes back after a while, maybe under another path
                held.url = _port_for(spec, PORT_RETURN_SECONDS)
            held.board = self._connect(spec, held.url)
            held.board.reset_method = self._reset_method(held)
            if spec.deploy and self.deploy:
                held.deployed = held.board.deploy(spec.deploy)

        def power_cycle() -> str:
            assert isinstance(held.lock, PlaceLock)
            held.board.close()
            return held.lock.power_cycle()

        hard_reset = None
        if isinstance(held.lock, PlaceLock) and _quietly(held.lock.has_power):  # the place's power switch
            hard_reset = power_cycle
        elif spec.reset:
            hard_reset = hard_reset_command
        elif spec.rts_reset:
            hard_reset = pulse_rts
        elif held.emulator is not None:
            hard_reset = restart_emulator
        return Ladder(lambda: held.board, hard_reset, reconnect, check)

    def _reset_method(self, held: Allocated) -> Callable[[], None]:
        """What ``board.hard_reset()`` does: farm.yaml's reset command, an RTS pulse, or the
        emulator's own reset (an emulator restarted as a new process is connected to again)."""
        spec = held.spec

        def run_command() -> None:
            commands.run(spec.reset, _command_values(spec, held.url), HARD_RESET_SECONDS, self.stopping)

        def reset_emulator() -> None:
            assert held.emulator is not None
            held.emulator.hard_reset()
            if not held.emulator.keeps_connection:
                held.board.reattach(open_transport(held.emulator.url, write_timeout=spec.timeout))

        if spec.reset:
            return run_command
        if held.emulator is not None and not spec.rts_reset:
            return reset_emulator
        return held.board.hard_reset_lines

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
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(cancel_futures=True)  # after Ctrl-C: boards not started yet are not
        coordinator, self._coordinator = self._coordinator, None
        if coordinator is not None:
            coordinator.close()
