"""Waiting for output: write + expect round trip vs mpremote's read_until.

An echo program runs on the board (``input()`` then ``print``); each round
sends a line and waits for its echo. Both clients run on the same emulated
micro:bit in the same run, taking turns (the emulator's UART takes one client
at a time). Prints figures and the ratio; it asserts nothing about timings.

    python bench/bench_expect.py [--rounds 3] [--lines 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

from mpremote.transport_serial import SerialTransport as MpremoteTransport

from pytest_boardfarm import connect
from pytest_boardfarm.emulator import MicrobitEmulator

ECHO = "while True:\n    s = input()\n    print('echo', s)\n"


def ours(url: str, lines: int) -> float:
    """Median seconds from write to the matching echo, with Board.write + Board.expect_exact."""
    with connect(url) as board:
        board.start(ECHO)
        times = []
        for i in range(lines):
            start = time.perf_counter()
            board.write(f"{i}\r")
            board.expect_exact(f"echo {i}\r\n", timeout=10)
            times.append(time.perf_counter() - start)
        board.stop()
        return statistics.median(times)


def theirs(url: str, lines: int) -> float:
    """The same with mpremote: exec_raw_no_follow, serial.write, read_until."""
    transport = MpremoteTransport(url, baudrate=115200)
    try:
        transport.enter_raw_repl(soft_reset=False)
        transport.exec_raw_no_follow(ECHO)
        times = []
        for i in range(lines):
            start = time.perf_counter()
            transport.serial.write(f"{i}\r".encode())
            got = transport.read_until(1, f"echo {i}\r\n".encode(), timeout=10)
            times.append(time.perf_counter() - start)
            if not got.endswith(f"echo {i}\r\n".encode()):
                raise RuntimeError(f"mpremote: no echo for line {i}: {got[-80:]!r}")
        transport.serial.write(b"\x03")  # end the echo program
        transport.exit_raw_repl()
        return statistics.median(times)
    finally:
        transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lines", type=int, default=200)
    args = parser.parse_args()
    with MicrobitEmulator() as emulator:
        mine, other = [], []
        for _ in range(args.rounds):
            mine.append(ours(emulator.url, args.lines))
            other.append(theirs(emulator.url, args.lines))
    a, b = statistics.median(mine), statistics.median(other)
    print(f"write + expect round trip, median of {args.rounds} rounds x {args.lines} lines (emulated micro:bit)")
    print(f"  pytest-boardfarm  Board.write + expect_exact  {a * 1000:8.2f} ms")
    print(f"  mpremote          serial.write + read_until   {b * 1000:8.2f} ms")
    print(f"  ratio (mpremote / ours)                       {b / a:8.1f}x")


if __name__ == "__main__":
    main()
