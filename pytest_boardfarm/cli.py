"""The ``boardfarm`` command line: a small registry of subcommands.

Each command group lives in its own module (cli_farm: list, ports, check;
cli_exec: exec, run, eval, deploy, reset, flash; cli_console: monitor, repl)
and is a :class:`~.cli_support.Command` in ``COMMANDS``; a new command is one
more entry, not another branch here.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from types import FrameType

from . import cli_console, cli_exec, cli_farm
from .cli_support import Command, UsageError
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


def _board_count(text: str) -> int:
    """An argparse type: 0 boards would print nothing and wait, as if it served some."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more boards, got {text!r}")
    return count


def _emulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", "-n", type=_board_count, default=1, help="how many boards (default 1)")
    parser.add_argument(
        "--type", "-t", choices=sorted(EMULATORS), default="microbit", help="which emulated board (default microbit)"
    )


COMMANDS: tuple[Command, ...] = (
    *cli_farm.COMMANDS,
    *cli_exec.COMMANDS,
    *cli_console.COMMANDS,
    Command("emulate", "run emulated boards until interrupted; prints their URLs", _emulate_arguments, _emulate),
)


def _version() -> str:
    try:
        return version("pytest-boardfarm")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree that is not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="boardfarm", description="See, check and drive a farm of MicroPython boards.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    stopped_by_sigterm = _stop_like_ctrl_c_on_sigterm()
    try:
        result: int = args.func(args)
    except UsageError as exc:
        print(f"boardfarm: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("boardfarm: interrupted", file=sys.stderr)
        return 128 + signal.SIGTERM if stopped_by_sigterm.is_set() else 130
    return result


def _stop_like_ctrl_c_on_sigterm() -> threading.Event:
    """SIGTERM (a cancelled CI job) stops a command as Ctrl-C does, so that its boards are left
    at a prompt and its labgrid places released (killed outright, a place stays acquired).
    Commands that handle signals themselves (monitor, repl, emulate) set their own handler."""
    received = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        received.set()
        raise KeyboardInterrupt("SIGTERM")

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, on_sigterm)
    return received


if __name__ == "__main__":
    sys.exit(main())
