"""The ``boardfarm`` command line."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from .emulators import EMULATORS, EmulatorError, start_many
from .inventory import seconds_argument


def _emulate(args: argparse.Namespace) -> int:
    """Start N emulated boards of one type, print their URLs, run until interrupted."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        boards = start_many(args.count, board_type=EMULATORS[args.type])
    except EmulatorError as exc:
        print(f"boardfarm: {exc}", file=sys.stderr)
        return 2
    try:
        for board in boards:
            print(board.url, flush=True)
        stop.wait()
    finally:
        for board in boards:
            board.stop()
    return 0


def _flash(args: argparse.Namespace) -> int:
    """Flash farm.yaml's firmware on the chosen boards (all with one), in parallel; a table at the end."""
    from .inventory import FarmConfigError, UnknownBoard, load_farm
    from .pool import BoardPool

    try:
        farm = load_farm(args.farm)
        names = args.board or [b.name for b in farm.boards if b.firmware is not None]
        specs = [farm.get(name) for name in names]
    except (FarmConfigError, UnknownBoard) as exc:
        print(f"boardfarm: {exc}", file=sys.stderr)
        return 2
    without = [s.name for s in specs if s.firmware is None]
    if without or not specs:
        print(f"boardfarm: no 'firmware' in farm.yaml for: {', '.join(without) or 'any board'}", file=sys.stderr)
        return 2

    def progress(line: str) -> None:
        print(line, flush=True)

    pool = BoardPool(farm, lock_timeout=args.lock_timeout, flash=True, force=args.force, log=progress)
    started = time.monotonic()
    try:
        pool.acquire_many(names)
    finally:
        pool.release_all()
    rows = [("board", "image", "result", "seconds")]
    failed = 0
    for name in names:
        outcome = pool.flashed.get(name)
        if outcome is None:  # never got to flashing: locked, missing, not answering
            failed += 1
            print(f"{name}: {pool.unavailable.get(name, 'not flashed')}", flush=True)
            rows.append((name, "-", "not flashed", "-"))
            continue
        failed += not outcome.ok
        print(f"{name}: {outcome.describe()}", flush=True)
        rows.append((name, outcome.running, outcome.result, f"{outcome.seconds:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(names) - failed} of {len(names)} boards ok in {time.monotonic() - started:.1f}s")
    return 1 if failed else 0


def _board_count(text: str) -> int:
    """An argparse type: 0 boards would print nothing and wait, as if it served some."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more boards, got {text!r}")
    return count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="boardfarm", description="Tools for a farm of MicroPython boards.")
    commands = parser.add_subparsers(dest="command", required=True)
    emulate = commands.add_parser("emulate", help="run emulated boards until interrupted; prints their URLs")
    emulate.add_argument("--count", "-n", type=_board_count, default=1, help="how many boards (default 1)")
    emulate.add_argument(
        "--type", "-t", choices=sorted(EMULATORS), default="microbit", help="which emulated board (default microbit)"
    )
    emulate.set_defaults(func=_emulate)
    flash = commands.add_parser("flash", help="flash farm.yaml's firmware on the farm's boards, verify, roll back")
    flash.add_argument("--farm", required=True, metavar="PATH", help="farm inventory (farm.yaml)")
    flash.add_argument("--board", action="append", default=[], metavar="NAME", help="only this board (repeatable)")
    flash.add_argument("--force", action="store_true", help="flash even boards that prove they run the image")
    flash.add_argument(
        "--lock-timeout",
        type=seconds_argument(zero_ok=True),
        default=60.0,
        metavar="SECONDS",
        help="wait for a locked board",
    )
    flash.set_defaults(func=_flash)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
