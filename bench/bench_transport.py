"""Exec round trip and put throughput: pytest-boardfarm vs mpremote's transport.

Both run on the same emulated micro:bit in the same run, taking turns (the
emulator's UART takes one client at a time), with the link floor for the exec (a
minimal plain raw client, bench/floor.py). Prints figures and ratios; it asserts
nothing about timings.

    python bench/bench_transport.py [--rounds 3] [--execs 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from floor import Minimal
from mpremote.transport_serial import SerialTransport as MpremoteTransport

from pytest_boardfarm import connect
from pytest_boardfarm.emulator import MicrobitEmulator

TEXT = (b"def blink(pin, times):\n    for i in range(times):\n        pin.write_digital(i % 2)\n" * 120)[:8192]
BINARY = bytes((i * 131 + 7) % 256 for i in range(4096))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ours(url: str, execs: int) -> dict[str, float]:
    with connect(url) as board:
        board.exec("pass")
        rtt = statistics.median(timed(lambda: board.exec("pass")) for _ in range(execs))
        out = {"exec": rtt}
        for label, data in (("put text", TEXT), ("put binary", BINARY)):
            out[label] = len(data) / timed(lambda d=data: board.put(d, "bench.bin"))  # type: ignore[misc]
            board.remove("bench.bin")
        return out


def theirs(url: str, execs: int) -> tuple[dict[str, float], dict[str, bool]]:
    transport = MpremoteTransport(url, baudrate=115200)
    try:
        transport.enter_raw_repl(soft_reset=False)
        transport.exec("pass")
        rtt = statistics.median(timed(lambda: transport.exec("pass")) for _ in range(execs))
        out = {"exec": rtt}
        intact = {}
        for label, data in (("put text", TEXT), ("put binary", BINARY)):
            out[label] = len(data) / timed(lambda t=transport, d=data: t.fs_writefile("bench.bin", d))  # type: ignore[misc]
            transport.exit_raw_repl()
            transport.close()
            with connect(url) as board:  # check what mpremote wrote, with our verified reader
                intact[label] = board.get("bench.bin") == data
                board.remove("bench.bin")
            transport = MpremoteTransport(url, baudrate=115200)
            transport.enter_raw_repl(soft_reset=False)
        return out, intact
    finally:
        transport.close()


def floor(url: str, execs: int) -> float:
    minimal = Minimal(url)
    try:
        minimal.plain(b"pass")
        return statistics.median(timed(lambda: minimal.plain(b"pass")) for _ in range(execs))
    finally:
        minimal.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--execs", type=int, default=200)
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, float]]] = {}
    intact_all: dict[str, list[bool]] = {}
    floors: list[float] = []
    with MicrobitEmulator() as emu:
        for _ in range(args.rounds):
            floors.append(floor(emu.url, args.execs))
            a = ours(emu.url, args.execs)
            b, intact = theirs(emu.url, args.execs)
            for key in a:
                rows.setdefault(key, []).append((a[key], b[key]))
            for key, ok in intact.items():
                intact_all.setdefault(key, []).append(ok)
    print(f"one emulated micro:bit (MicroPython 1.9.2), {args.rounds} rounds, medians of rounds")
    print(f"{'measure':<12} {'boardfarm':>14} {'mpremote':>14} {'ratio':>8}")
    for key, pairs in rows.items():
        mine = statistics.median(p[0] for p in pairs)
        peer = statistics.median(p[1] for p in pairs)
        if key == "exec":
            print(f"{'exec rtt':<12} {mine * 1000:>11.2f} ms {peer * 1000:>11.2f} ms {peer / mine:>7.1f}x faster")
            link = statistics.median(floors)
            print(f"{'link floor':<12} {link * 1000:>11.2f} ms {'':>14} boardfarm at {mine / link:.2f}x the floor")
        else:
            print(f"{key:<12} {mine / 1024:>9.1f} KiB/s {peer / 1024:>9.1f} KiB/s {mine / peer:>7.1f}x faster")
    for key, oks in intact_all.items():
        print(f"mpremote {key}: file arrived intact in {sum(oks)} of {len(oks)} rounds (boardfarm verifies every put)")


if __name__ == "__main__":
    main()
