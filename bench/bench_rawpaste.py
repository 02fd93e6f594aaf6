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
import socket
import statistics
import struct
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from mpremote.transport_serial import SerialTransport as MpremoteTransport

from pytest_boardfarm import connect
from pytest_boardfarm.emulators import UnixPortBoard

SHORT = b"x = 1"
LONG = b"\n".join(b"v%d = %d" % (i, i) for i in range(200)) + b"\nx = v199"  # ~2 KB


class Minimal:
    """A client that does only the exchange itself: what the link and the board cost."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.sock.sendall(b"\r\x03\x03\x01")
        self.until(b"raw REPL; CTRL-B to exit\r\n>")

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("the board closed the connection")
            self.buf += data
        head, _, self.buf = self.buf.partition(marker)
        return head

    def take(self, count: int) -> bytes:
        while len(self.buf) < count:
            self.buf += self.sock.recv(4096)
        head, self.buf = self.buf[:count], self.buf[count:]
        return head

    def plain(self, source: bytes) -> None:
        self.sock.sendall(source + b"\x04")
        reply = self.until(b"\x04>")
        assert reply.startswith(b"OK") and reply.endswith(b"\x04"), reply

    def paste(self, source: bytes) -> None:
        self.sock.sendall(b"\x05A\x01")
        assert self.take(2) == b"R\x01"
        window = struct.unpack("<H", self.take(2))[0]
        allowed, sent = 0, 0
        while sent < len(source):
            while allowed == 0 or self.buf:
                flag = self.take(1)
                assert flag == b"\x01", flag  # a window (an abort would be \x04)
                allowed += window
            piece = source[sent : sent + allowed]
            self.sock.sendall(piece)
            sent += len(piece)
            allowed -= len(piece)
        self.sock.sendall(b"\x04")
        reply = self.until(b"\x04>")
        assert reply.lstrip(b"\x01").startswith(b"\x04") and reply.endswith(b"\x04"), reply

    def close(self) -> None:
        self.sock.close()


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
