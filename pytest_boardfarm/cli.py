"""The ``boardfarm`` command line."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .emulators import EMULATORS, EmulatorError, start_many


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="boardfarm", description="Tools for a farm of MicroPython boards.")
    commands = parser.add_subparsers(dest="command", required=True)
    emulate = commands.add_parser("emulate", help="run emulated boards until interrupted; prints their URLs")
    emulate.add_argument("--count", "-n", type=int, default=1, help="how many boards (default 1)")
    emulate.add_argument(
        "--type", "-t", choices=sorted(EMULATORS), default="microbit", help="which emulated board (default microbit)"
    )
    emulate.set_defaults(func=_emulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
