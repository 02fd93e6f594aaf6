"""What every ``boardfarm`` subcommand shares: the registry entry, the farm, the selection,
and working on the selected boards in parallel with each board's lines prefixed.

The farm is found as pytest finds it (farmfile.py), boards are selected as pytest's
``--board`` / ``--board-tag`` select them (selection.Filters), and boards are had
through the same BoardPool, so its locks, recovery and quarantine hold here too.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .errors import BoardError, DeviceError
from .farmfile import ENV_VAR, INI_KEY, find_farm_file, ini_setting
from .inventory import BoardSpec, Farm, FarmConfigError, UnknownBoard, load_farm, seconds_argument
from .pool import Allocated, BoardPool, BoardUnavailable, Quarantined
from .selection import Filters

LOCK_TIMEOUT = 10.0  # a person at a shell waits less than a CI job


class UsageError(Exception):
    """Bad input from the command line or the farm file: printed, exit status 2."""


@dataclass(frozen=True)
class Command:
    """One subcommand: ``add_arguments`` fills its argparse parser, ``run`` does it (returns the exit status)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_farm_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--farm",
        metavar="PATH",
        help=f"farm inventory (default: ${ENV_VAR}, else {INI_KEY} in the pytest ini / pyproject.toml)",
    )


def add_lock_option(parser: argparse.ArgumentParser, default: float = LOCK_TIMEOUT) -> None:
    parser.add_argument(
        "--lock-timeout",
        type=seconds_argument(zero_ok=True),
        default=default,
        metavar="SECONDS",
        help=f"how long to wait for a board another run holds (default {default:g})",
    )


def add_selection_options(
    parser: argparse.ArgumentParser, *, lock: float | None = LOCK_TIMEOUT, json_output: bool = True
) -> None:
    """--farm, --board, --board-tag (as pytest has them), --lock-timeout and --json."""
    add_farm_option(parser)
    parser.add_argument("--board", action="append", default=[], metavar="NAME", help="only this board (repeatable)")
    parser.add_argument(
        "--board-tag", action="append", default=[], metavar="TAG", help="only boards with this tag (repeatable)"
    )
    if lock is not None:  # the default wait
        add_lock_option(parser, lock)
    if json_output:
        parser.add_argument("--json", action="store_true", help="one JSON document instead of lines")


def load(option: str | None, cwd: Path | None = None) -> Farm:
    """The farm, found as pytest finds it; UsageError naming every problem of a broken file."""
    cwd = cwd or Path.cwd()
    found = find_farm_file(option, *ini_setting(cwd))
    if found is None:
        raise UsageError(f"no farm inventory: give --farm PATH, set ${ENV_VAR}, or set {INI_KEY} in the pytest ini")
    try:
        return load_farm(found.path)
    except FarmConfigError as exc:
        raise UsageError(f"{exc} (farm from {found.source})") from None


def select(farm: Farm, names: Sequence[str], tags: Sequence[str]) -> list[BoardSpec]:
    """The boards named and tagged, in farm order; all boards when nothing is asked."""
    try:
        for name in names:
            farm.get(name)
    except UnknownBoard as exc:
        raise UsageError(str(exc)) from None
    chosen = Filters(names=tuple(names), tags=tuple(tags)).apply(farm.boards)
    if not chosen:
        asked = Filters(names=tuple(names), tags=tuple(tags)).describe()
        raise UsageError(f"no board matches {asked}; the farm has: {', '.join(b.describe() for b in farm.boards)}")
    return chosen


def selected(args: argparse.Namespace) -> tuple[Farm, list[BoardSpec]]:
    farm = load(args.farm)
    return farm, select(farm, args.board, args.board_tag)


class Lines:
    """Output shared by the board threads: whole blocks, each line prefixed with the board's name."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._lock = threading.Lock()

    def board(self, name: str, text: str) -> None:
        lines = text.rstrip("\n").split("\n") if text.strip() else []
        with self._lock:
            for line in lines:
                self.out.write(f"{name}: {line}\n")
            self.out.flush()

    def plain(self, text: str) -> None:
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()


@dataclass
class Outcome:
    """What one board did: ``output`` it printed, ``error`` (a device traceback as printed, or why not)."""

    board: str
    ok: bool
    output: str = ""
    error: str = ""
    value: Any = None
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


def _tell(message: str) -> None:
    print(f"boardfarm: {message}", file=sys.stderr, flush=True)


STOP_SECONDS = 10.0  # after Ctrl-C, the longest the boards' threads get to stop (each sends Ctrl-C to its board)

Work = Callable[[Allocated, BoardPool], Outcome]  # the board held, and the pool that holds it


def on_boards(
    farm: Farm,
    specs: Sequence[BoardSpec],
    work: Work,
    *,
    lock_timeout: float,
    command: str,
    deploy: bool = False,
    started: Callable[[str], None] = lambda _: None,
) -> list[Outcome]:
    """Lock, connect and ``work`` on every board at once, in its own thread; results in farm order.

    A board that cannot be had (locked past the timeout, port missing, quarantined
    by the recovery ladder) is a failed outcome with the pool's reason; a device
    exception is a failed outcome with the traceback as the board printed it.
    """
    pool = BoardPool(farm, lock_timeout=lock_timeout, run_id=f"boardfarm {command}", deploy=deploy, notice=_tell)

    def one(spec: BoardSpec) -> Outcome:
        begin = time.monotonic()
        try:
            held = pool.acquire(spec.name)
            started(spec.name)
            outcome = work(held, pool)
        except BoardUnavailable as exc:  # the pool's reason; its cause says whether it was quarantined
            quarantined = isinstance(exc, Quarantined) or isinstance(exc.__cause__, Quarantined)
            outcome = Outcome(spec.name, False, error=str(exc), details={"quarantined": quarantined})
        except DeviceError as exc:
            outcome = Outcome(spec.name, False, output=exc.stdout, error=exc.traceback)
        except BoardError as exc:  # timeouts, a lost port, a board that cannot do what was asked
            outcome = Outcome(spec.name, False, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - one board's failure is its row, the others carry on
            outcome = Outcome(spec.name, False, error=f"{type(exc).__name__}: {exc}")
        outcome.seconds = time.monotonic() - begin
        return outcome

    # The threads live until the boards are released: an emulator started in a
    # thread dies with it (PR_SET_PDEATHSIG follows the thread).
    with ThreadPoolExecutor(max_workers=max(1, len(specs)), thread_name_prefix="boardfarm-cli") as workers:
        futures = [workers.submit(one, spec) for spec in specs]
        try:
            results = [f.result() for f in futures]
        except BaseException:  # Ctrl-C or SIGTERM, which only this thread gets: the others stop waiting
            pool.stopping.set()
            futures_wait(futures, timeout=STOP_SECONDS)
            raise
        finally:
            pool.release_all()
    return results


def print_outcomes(outcomes: Sequence[Outcome], lines: Lines, *, as_json: bool) -> int:
    """Every board's output and error, prefixed (or one JSON list); 1 if any board failed."""
    if as_json:
        lines.plain(json.dumps([asdict(o) for o in outcomes], indent=2, default=str))
    else:
        for o in outcomes:
            lines.board(o.board, o.output)
            if o.error:
                lines.board(o.board, o.error)
    return 0 if all(o.ok for o in outcomes) else 1


def table(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
