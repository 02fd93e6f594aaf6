"""``boardfarm monitor NAME`` and ``boardfarm repl NAME``: one board's serial port at the terminal.

Both hold the board's lock for as long as they run (a pytest run waits, and
``boardfarm list`` names the holder), and neither touches the board on
connecting: ``monitor`` never writes to it, ``repl`` sends what is typed
(and one Ctrl-B, which leaves a raw REPL and shows the banner and prompt).
Ctrl-] leaves both, as in mpremote; a monitor also leaves on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator, Sequence
from types import FrameType

from .cli_support import Command, UsageError, add_farm_option, add_lock_option, load
from .errors import BoardError
from .inventory import UnknownBoard
from .locks import LockTimeout
from .pool import BoardPool, BoardUnavailable
from .transport import Transport, open_transport

LEAVE = b"\x1d"  # Ctrl-]
INTERRUPT = b"\x03"
SHOW_PROMPT = b"\x02"  # Ctrl-B: out of a raw REPL; at the friendly prompt it prints the banner
POLL_SECONDS = 0.1  # every wait, on the port or the keyboard, is this short: a stop is seen at once


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[bool]:
    """Keys one by one, unechoed, Ctrl-C as a byte (restored on leaving); False if not a terminal."""
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class Console:
    """Board output to ``out``; keys from ``keys`` to the board (unless read-only) until Ctrl-]."""

    def __init__(self, transport: Transport, keys: int, out: int, *, read_only: bool) -> None:
        self.transport = transport
        self.keys = keys
        self.out = out
        self.read_only = read_only
        self.stop = threading.Event()
        self.lost: str | None = None

    def run(self) -> int:
        reader = threading.Thread(target=self._board_to_terminal, name="boardfarm-console", daemon=True)
        reader.start()
        try:
            while not self.stop.is_set():
                ready, _, _ = select.select([self.keys], [], [], POLL_SECONDS)
                if not ready:
                    continue
                data = os.read(self.keys, 1024)
                if not data:  # end of input (a pipe): nothing more to type
                    if self.read_only:
                        self.keys_closed()
                        continue
                    break
                if LEAVE in data or (self.read_only and INTERRUPT in data):
                    data = data.split(LEAVE, 1)[0] if LEAVE in data else b""
                    self.send(data)
                    break
                self.send(data)
        finally:
            self.stop.set()
            reader.join(timeout=5 * POLL_SECONDS + 1)
        if self.lost:
            os.write(self.out, f"\r\nboardfarm: {self.lost}\r\n".encode())
            return 1
        os.write(self.out, b"\r\n")
        return 0

    def keys_closed(self) -> None:
        """No keyboard (input from a closed pipe): wait for a signal instead."""
        self.stop.wait()

    def send(self, data: bytes) -> None:
        if data and not self.read_only:
            try:
                self.transport.write(data)
            except BoardError as exc:
                self.lost = str(exc)
                self.stop.set()

    def _board_to_terminal(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.transport.read(POLL_SECONDS)
            except BoardError as exc:
                self.lost = str(exc)
                self.stop.set()
                return
            if data:
                os.write(self.out, data)


def _console(args: argparse.Namespace, *, read_only: bool) -> int:
    farm = load(args.farm)
    try:
        spec = farm.get(args.name)
    except UnknownBoard as exc:
        raise UsageError(str(exc)) from None
    pool = BoardPool(farm, lock_timeout=args.lock_timeout, run_id=f"boardfarm {args.command}")
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    console: Console | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if console is None:  # still waiting for the lock
            raise KeyboardInterrupt
        console.stop.set()

    previous = [signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)]
    try:
        with pool.port_held(spec.name) as url:
            transport = open_transport(url, baudrate=spec.baudrate, dtr=spec.dtr, rts=spec.rts)
            try:
                how = "read-only; Ctrl-] or Ctrl-C leaves" if read_only else "Ctrl-] leaves"
                os.write(stdout, f"boardfarm: {spec.name} at {url}, locked ({how})\r\n".encode())
                with _raw_terminal(stdin):
                    console = Console(transport, stdin, stdout, read_only=read_only)
                    if not read_only:
                        console.send(SHOW_PROMPT)
                    return console.run()
            finally:
                transport.close()
    except (LockTimeout, BoardUnavailable, BoardError) as exc:
        print(f"boardfarm: {spec.name}: {exc}", file=sys.stderr)
        return 1
    finally:
        pool.release_all()  # a place's coordinator session
        for sig, handler in zip((signal.SIGTERM, signal.SIGINT), previous, strict=True):
            signal.signal(sig, handler)


def _console_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the board, by its farm.yaml name")
    add_farm_option(parser)
    add_lock_option(parser)


def _monitor(args: argparse.Namespace) -> int:
    return _console(args, read_only=True)


def _repl(args: argparse.Namespace) -> int:
    return _console(args, read_only=False)


COMMANDS: Sequence[Command] = (
    Command("monitor", "stream one board's serial output (read-only), holding its lock", _console_arguments, _monitor),
    Command("repl", "an interactive REPL on one board (Ctrl-] leaves), holding its lock", _console_arguments, _repl),
)
