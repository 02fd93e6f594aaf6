"""Put the firmware farm.yaml asks for on a board: flash, verify, roll back.

The farm layer, with no pytest in it; the pool and the ``boardfarm flash``
command both call :func:`ensure`. How an image gets onto a board (a flasher
command, an emulator restarted on the image) and how to reach the board
afterwards are the caller's: a :class:`Target`. This module owns the order of
things and what counts as proof:

- skip: the board answers, its file system holds the marker this module wrote
  after the last verified flash (the image's sha256), and its firmware still
  matches ``version``. A flash that erases the file system erases the marker,
  so such a board is flashed again rather than assumed;
- success: the board answers its raw REPL after the flash, ``check`` is true
  right after that boot (before any soft reset), and ``version`` matches;
- failure (the flasher fails, the board never comes back, a mismatch): flash
  ``fallback`` and check that the board answers; the caller reports the rest.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .board import Board
from .errors import BoardError
from .inventory import FirmwareSpec

MARKER = ".boardfarm-image"  # flat-FS friendly: the micro:bit has no directories

FLASHED, SKIPPED, ROLLED_BACK, FAILED = "flashed", "skipped", "rolled back", "failed"


class FlashError(BoardError):
    """An image could not be put on a board, or the board did not prove it runs it."""


class Target(Protocol):
    """One board as flashing sees it."""

    name: str
    keeps_image: bool  # can an image flashed before this process still be on the board?

    def install(self, image: Path) -> None:
        """Put ``image`` on the board; return once the board should be reachable again."""

    def connect(self) -> Board:
        """The board at its raw REPL, without a soft reset (the boot's state is kept)."""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def label(path: Path | None) -> str:
    """An image as reports name it: file name and short hash."""
    if path is None:
        return "unknown"
    try:
        return f"{path.name} ({digest(path)[:8]})"
    except OSError:
        return f"{path.name} (unreadable)"


@dataclass
class Outcome:
    """What flashing did to one board, for the board's reports."""

    board: str
    image: str  # label() of the image farm.yaml asks for
    result: str  # FLASHED, SKIPPED, ROLLED_BACK or FAILED
    seconds: float
    running: str  # label() of what the board runs now, as far as it was proven
    reason: str = ""  # why the image farm.yaml asks for is not running

    @property
    def ok(self) -> bool:
        return self.result in (FLASHED, SKIPPED)

    def describe(self) -> str:
        if self.ok:
            return f"{self.result} {self.image}"
        return f"image {self.image} failed: {self.reason}; the board runs {self.running}"


def ensure(
    target: Target, firmware: FirmwareSpec, *, force: bool = False, log: Callable[[str], None] = lambda _: None
) -> tuple[Outcome, Board | None]:
    """Make the board run ``firmware.image``; the outcome and the connected board
    (None when nothing verified runs on it)."""
    started = time.monotonic()
    image = firmware.image
    wanted = label(image)

    def outcome(result: str, running: str, reason: str = "") -> Outcome:
        return Outcome(target.name, wanted, result, time.monotonic() - started, running, reason)

    if not force and target.keeps_image:
        board = _already_running(target, firmware, log)
        if board is not None:
            log(f"{target.name}: already runs {wanted} (its marker and version say so): not flashed")
            return outcome(SKIPPED, wanted), board
    try:
        log(f"{target.name}: flashing {wanted}")
        board = _flash_and_verify(target, image, firmware)
        log(f"{target.name}: {wanted} flashed and verified")
        return outcome(FLASHED, wanted), board
    except (BoardError, OSError) as exc:
        reason = str(exc)
    log(f"{target.name}: {wanted} failed: {reason}")
    if firmware.fallback is None:
        return outcome(FAILED, "unknown firmware (no fallback image)", reason), None
    fallback = label(firmware.fallback)
    try:
        log(f"{target.name}: rolling back to {fallback}")
        board = _flash_and_verify(target, firmware.fallback, None)
    except (BoardError, OSError) as exc:
        log(f"{target.name}: the fallback {fallback} failed too: {exc}")
        return outcome(FAILED, "unknown firmware", f"{reason}; the fallback {fallback} failed too: {exc}"), None
    log(f"{target.name}: rolled back to {fallback}")
    return outcome(ROLLED_BACK, fallback, reason), board


def _already_running(target: Target, firmware: FirmwareSpec, log: Callable[[str], None]) -> Board | None:
    """The connected board if it proves it runs the image (marker and version), else None."""
    try:
        board = target.connect()
    except (BoardError, OSError) as exc:
        log(f"{target.name}: cannot tell what it runs ({exc}); flashing")
        return None
    try:
        marker = board.get(MARKER).decode("ascii", "replace").split() if board.exists(MARKER) else []
        if marker[:1] == [digest(firmware.image)] and _version_problem(board, firmware) is None:
            return board
    except (BoardError, OSError):
        pass
    board.close()
    return None


def _flash_and_verify(target: Target, image: Path, firmware: FirmwareSpec | None) -> Board:
    if not image.is_file():
        raise FlashError(f"no image file {image}")
    target.install(image)
    board = target.connect()
    try:
        if firmware is not None:
            _verify(board, firmware)
        if target.keeps_image:  # the marker is what a later run's skip is proven by
            board.put(f"{digest(image)} {image.name}\n".encode(), MARKER)
    except BaseException:
        board.close()
        raise
    return board


def _verify(board: Board, firmware: FirmwareSpec) -> None:
    if firmware.check:  # first: right after the boot, before anything else ran
        try:
            value = board.eval(f"bool({firmware.check}\n)")  # a bool comes back whatever the expression gives
        except BoardError as exc:
            raise FlashError(f"check {firmware.check!r} raised on the board: {_last_line(str(exc))}") from None
        if value is not True:
            raise FlashError(f"check {firmware.check!r} is false on the board")
    problem = _version_problem(board, firmware)
    if problem:
        raise FlashError(problem)


def _version_problem(board: Board, firmware: FirmwareSpec) -> str | None:
    if not firmware.version:
        return None
    running = board.info.firmware
    if re.search(firmware.version, running):
        return None
    return f"version {running!r} does not match {firmware.version!r}"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else text
