"""Board health: a quick probe, and the recovery ladder for a board that stopped answering.

The ladder climbs from gentle to heavy, each step with its own deadline, and
stops at the first step after which the probe passes:

1. interrupt: Ctrl-C and back to the raw REPL;
2. soft reset: Ctrl-D at the raw prompt;
3. hard reset: the board's ``reset`` command, an RTS pulse (``rts_reset``), or
   for an emulated board a restart of its emulator; then reconnect;
4. reconnect: close the port and open it again (a USB board that
   re-enumerated is found again by its serial number).

Everything tried, and what the board printed meanwhile, goes into the log. A
step that fails in any way (a board error, a reset command that cannot run, a
serial driver's error) is logged as failed and the ladder goes on: recovery
never takes the run down. When the board already ignored Ctrl-C in this
incident and a hard reset exists, the gentle steps are skipped: they cannot
work there and only cost time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .board import Board
from .errors import BoardError
from .transcript import readable

PROBE_SECONDS = 2.0
INTERRUPT_SECONDS = 5.0
SOFT_RESET_SECONDS = 5.0
HARD_RESET_SECONDS = 30.0


def probe(board: Board) -> None:
    """Raise unless the board runs a line of code and answers within a short deadline."""
    if board.eval("6 * 7", timeout=PROBE_SECONDS) != 42:
        raise BoardError(f"{board.name}: the health probe got a wrong answer")


@dataclass
class Step:
    name: str
    ok: bool
    detail: str


@dataclass
class RecoveryLog:
    board: str
    steps: list[Step] = field(default_factory=list)
    seconds: float = 0.0  # the whole climb, for the reports' time

    @property
    def recovered(self) -> bool:
        return bool(self.steps) and self.steps[-1].ok

    def describe(self) -> str:
        lines = [f"recovery of {self.board}: {self.seconds:.2f}s"]
        lines += [f"  {s.name}: {'ok' if s.ok else 'failed'}{' - ' + s.detail if s.detail else ''}" for s in self.steps]
        return "\n".join(lines)


class Ladder:
    """The steps available for one board; the pool supplies how to hard-reset and reconnect."""

    def __init__(
        self,
        get_board: Callable[[], Board],
        hard_reset: Callable[[], str] | None,
        reconnect: Callable[[], None],
        check: Callable[[Board], object] = probe,
    ) -> None:
        self._board = get_board
        self._hard_reset = hard_reset
        self._reconnect = reconnect
        self._check = check  # what "recovered" means: the probe, or at allocation the board's info

    def climb(self, name: str) -> RecoveryLog:
        log = RecoveryLog(name)
        started = time.monotonic()
        for step_name, step in self._steps():
            board = self._board()
            mark = board.transcript.mark()
            start = time.monotonic()
            try:
                note = step()
                self._check(self._board())
            except Exception as exc:  # noqa: BLE001 - any failure of a step is logged, never fatal
                printed = readable(board.transcript.since(mark))[-300:].strip()
                detail = _reason(exc) + (f"; the board printed: {printed!r}" if printed else "")
                log.steps.append(Step(step_name, False, detail))
                continue
            took = f"{time.monotonic() - start:.2f}s"
            log.steps.append(Step(step_name, True, f"{note}, {took}" if note else took))
            break
        log.seconds = time.monotonic() - started
        return log

    def hard_reset(self) -> str:
        """Only the hard step, then the check: for a person who asks for a hard reset."""
        if self._hard_reset is None:
            raise BoardError(
                "no hard reset: farm.yaml gives no 'reset' command or 'rts_reset' for this board"
                " (nor, on a labgrid place, does the place have a power resource)"
            )
        note = self._hard_then_reconnect()
        self._check(self._board())
        return note

    def _steps(self) -> list[tuple[str, Callable[[], str]]]:
        steps: list[tuple[str, Callable[[], str]]] = []
        if not (self._board().interrupt_failed and self._hard_reset is not None):
            steps += [("interrupt", self._interrupt), ("soft reset", self._soft_reset)]
        if self._hard_reset is not None:
            steps.append(("hard reset", self._hard_then_reconnect))
        steps.append(("reconnect", self._reconnect_only))
        return steps

    def _interrupt(self) -> str:
        _not_deaf(self._board()).interrupt(INTERRUPT_SECONDS)
        return ""

    def _soft_reset(self) -> str:  # Ctrl-D only works at an idle prompt, which Ctrl-C failed to reach
        _not_deaf(self._board()).soft_reset(timeout=SOFT_RESET_SECONDS)
        return ""

    def _hard_then_reconnect(self) -> str:
        assert self._hard_reset is not None
        note = self._hard_reset()
        self._reconnect()
        return note

    def _reconnect_only(self) -> str:
        self._reconnect()
        return ""


def _not_deaf(board: Board) -> Board:
    if board.interrupt_failed:
        raise BoardError("skipped: the board already ignored Ctrl-C")
    return board


def _reason(exc: Exception) -> str:
    """A step's failure in one line; errors that are not the board's own name their type."""
    return str(exc) if isinstance(exc, BoardError) else f"{type(exc).__name__}: {exc}"
