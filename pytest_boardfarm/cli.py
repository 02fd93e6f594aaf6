"""The ``boardfarm`` command line."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .emulator import EmulatorError, start_many


def _emulate(args: argparse.Namespace) -> int:
    """Start N emulated micro:bits, print their URLs, run until interrupted."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        boards = start_many(args.count)
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
    emulate = commands.add_parser("emulate", help="run emulated micro:bits until interrupted; prints their URLs")
    emulate.add_argument("--count", "-n", type=_board_count, default=1, help="how many boards (default 1)")
    emulate.set_defaults(func=_emulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
