"""Exec round trip on firmware with raw-paste mode: pytest-boardfarm against the link floor.

One emulated board running MicroPython 1.28's unix port (raw-paste mode, window 128
bytes). Taking turns on it, in the same run:
- pytest-boardfarm's ``Board.exec``;
- mpremote's transport (``exec``: raw-paste where the board has it);
- two minimal clients on a bare socket, the link floor: plain raw mode (source,
  Ctrl-D, read to the prompt) and raw-paste mode (request, window, source, Ctrl-D,
  read to the prompt), each doing nothing else.
For a short source (``x = 1``) and a long one (~2 KB, 16 windows). Prints medians and
ratios; asserts nothing about timings.

    python bench/bench_rawpaste.py [--rounds 3] [--execs 300]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from floor import Minimal
from mpremote.transport_serial import SerialTransport as MpremoteTransport

from pytest_boardfarm import connect
from pytest_boardfarm.emulators import UnixPortBoard

SHORT = b"x = 1"
LONG = b"\n".join(b"v%d = %d" % (i, i) for i in range(200)) + b"\nx = v199"  # ~2 KB


def median_seconds(fn: Callable[[], object], count: int) -> float:
    fn()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def one_round(url: str, execs: int) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    sources = (("short", SHORT), ("long", LONG))
    with connect(url, name="bench") as board:
        for label, source in sources:
            out["boardfarm", label] = median_seconds(lambda s=source: board.exec(s), execs)  # type: ignore[misc]
        assert board.raw_paste is True
    transport = MpremoteTransport(url, baudrate=115200)
    try:
        transport.enter_raw_repl(soft_reset=False)
        for label, source in sources:
            out["mpremote", label] = median_seconds(lambda s=source: transport.exec(s), max(20, execs // 10))  # type: ignore[misc]
        transport.exit_raw_repl()
    finally:
        transport.close()
    minimal = Minimal(url)
    try:
        for label, source in sources:
            out["plain raw floor", label] = median_seconds(lambda s=source: minimal.plain(s), execs)  # type: ignore[misc]
            out["raw-paste floor", label] = median_seconds(lambda s=source: minimal.paste(s), execs)  # type: ignore[misc]
    finally:
        minimal.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--execs", type=int, default=300)
    args = parser.parse_args()
    rounds: list[dict[tuple[str, str], float]] = []
    with UnixPortBoard() as emu:
        for _ in range(args.rounds):
            rounds.append(one_round(emu.url, args.execs))
    result = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(f"one emulated board, MicroPython 1.28 unix port (raw-paste), {args.rounds} rounds, medians of rounds")
    print(f"short: {SHORT.decode()!r} ({len(SHORT)} bytes); long: {len(LONG)} bytes")
    print(f"{'client':<17} {'short':>10} {'long':>10}   vs the floor (short: plain raw; long: the better one)")
    floor_short = result["plain raw floor", "short"]
    floor_long = min(result["plain raw floor", "long"], result["raw-paste floor", "long"])
    for client in ("boardfarm", "mpremote", "plain raw floor", "raw-paste floor"):
        short, long = result[client, "short"], result[client, "long"]
        print(
            f"{client:<17} {short * 1000:>7.3f} ms {long * 1000:>7.3f} ms"
            f"   {short / floor_short:>5.2f}x {long / floor_long:>5.2f}x"
        )
    print(
        "plain raw sends a long source unpaced here; on a real UART it must be paced "
        "(the board's receive buffer), raw-paste's windows do that"
    )


if __name__ == "__main__":
    main()
