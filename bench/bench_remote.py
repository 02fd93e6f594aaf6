"""Boards over the network: exec round trip, put throughput and open time.

Four ways to one kind of board, in the same run, each on its own emulated
micro:bit (an emulator's UART takes one client at a time):

- local:    ``socket://`` straight to QEMU (the baseline);
- raw TCP:  ser2net's raw ``tcp`` accepter in front of a pty (a labgrid
            NetworkSerialPort with ``protocol: raw``);
- RFC 2217: ser2net's ``telnet(rfc2217)`` accepter in front of a pty, through
            pytest-boardfarm's own client (telnet.py), and through pyserial's.

With labgrid installed it also times opening a board on a labgrid place from
scratch: a coordinator session, acquiring the place, finding its
NetworkSerialPort, connecting (coordinator and exporter on this machine).
Prints figures; asserts nothing about timings.

    python bench/bench_remote.py [--rounds 3] [--execs 200]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

from pytest_boardfarm import Board, connect
from pytest_boardfarm.emulator import MicrobitEmulator, _die_with_parent, free_port
from pytest_boardfarm.transport import SerialTransport

TEXT = (b"def blink(pin, times):\n    for i in range(times):\n        pin.write_digital(i % 2)\n" * 120)[:8192]
BINARY = bytes((i * 131 + 7) % 256 for i in range(4096))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@contextlib.contextmanager
def pty_for(url: str) -> Iterator[str]:
    """The board's TCP UART as a tty (/dev/pts/N), as a USB board is on its exporter host."""
    host, port = url.removeprefix("socket://").rsplit(":", 1)
    master, slave = os.openpty()
    tty.setraw(slave)
    sock = socket.create_connection((host, int(port)))
    stop_r, stop_w = os.pipe()

    def pump() -> None:
        while True:
            ready, _, _ = select.select([master, sock, stop_r], [], [])
            if stop_r in ready:
                return
            with contextlib.suppress(OSError):
                if master in ready:
                    sock.sendall(os.read(master, 4096))
                if sock in ready:
                    os.write(master, sock.recv(4096))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield os.ttyname(slave)
    finally:
        os.write(stop_w, b"x")
        thread.join(5)
        sock.close()
        for fd in (master, slave, stop_r, stop_w):
            os.close(fd)


@contextlib.contextmanager
def started(argv: list[str], port: int, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
    )
    try:
        for _ in range(600):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if proc.poll() is not None:
                raise SystemExit(f"{argv[0]} exited with {proc.returncode}")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def ser2net(device: str, accepter: str, workdir: Path) -> Iterator[int]:
    binary = shutil.which("ser2net") or shutil.which("ser2net", path="/usr/sbin:/sbin")
    if binary is None:
        raise SystemExit("ser2net is not installed (apt-get install ser2net; scripts/setup does)")
    port = free_port()
    config = workdir / f"ser2net-{port}.yaml"
    config.write_text(
        f"connection: &c{port}\n  accepter: {accepter},127.0.0.1,{port}\n"
        f"  connector: serialdev,{device},115200n81,local\n"
    )
    argv = [binary, "-n", "-u", "-P", str(workdir / f"{port}.pid"), "-c", str(config)]
    with started(argv, port, workdir):
        yield port


def ours(url: str) -> Board:
    return connect(url, timeout=10)


def pyserial(url: str) -> Board:
    """pyserial's RFC 2217 client under our raw REPL (in front of a pty it needs ?ign_set_control)."""
    board = Board(SerialTransport(url + "?ign_set_control"), name=url, timeout=10)
    board.enter_raw_repl()
    return board


def measure(open_board: Callable[[], Board], execs: int) -> dict[str, float]:
    out = {"open": timed(lambda: open_board().close())}
    with open_board() as board:
        board.exec("pass")
        out["exec"] = statistics.median(timed(lambda: board.exec("pass")) for _ in range(execs))
        for label, data in (("put text", TEXT), ("put binary", BINARY)):
            out[label] = len(data) / timed(lambda d=data: board.put(d, "bench.bin"))  # type: ignore[misc]
            board.remove("bench.bin")
    return out


def place_open(raw_port: int, workdir: Path) -> float:
    """From nothing to a connected board on a labgrid place (coordinator session, acquire, connect)."""
    from pytest_boardfarm.places import Coordinator, PlaceLock

    bindir = Path(sys.executable).parent
    port = free_port()
    address = f"127.0.0.1:{port}"
    (workdir / "exporter.yaml").write_text(
        f"bench:\n  NetworkSerialPort:\n    host: 127.0.0.1\n    port: {raw_port}\n    protocol: raw\n"
    )
    with started([str(bindir / "labgrid-coordinator"), "-l", address], port, workdir):
        exporter = [str(bindir / "labgrid-exporter"), "-c", address, "-n", "benchhost", str(workdir / "exporter.yaml")]
        proc = subprocess.Popen(exporter, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = [str(bindir / "labgrid-client"), "-x", address, "-p", "bench"]
            subprocess.run([*client, "create"], check=True, capture_output=True)
            for _ in range(100):
                if subprocess.run([*client, "add-match", "benchhost/bench/NetworkSerialPort"]).returncode == 0:
                    break
                time.sleep(0.1)
            time.sleep(1)  # the exporter's resource reaches the coordinator
            start = time.perf_counter()
            coordinator = Coordinator(address)
            lock = PlaceLock(coordinator, "bench")
            lock.acquire(10)
            board = connect(lock.endpoint().url, timeout=10)
            elapsed = time.perf_counter() - start
            board.close()
            lock.release()
            coordinator.close()
            return elapsed
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--execs", type=int, default=200)
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {}
    place_opens: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        local, raw, net, py = (stack.enter_context(MicrobitEmulator()) for _ in range(4))
        raw_port = stack.enter_context(ser2net(stack.enter_context(pty_for(raw.url)), "tcp", workdir))
        net_port = stack.enter_context(ser2net(stack.enter_context(pty_for(net.url)), "telnet(rfc2217),tcp", workdir))
        py_port = stack.enter_context(ser2net(stack.enter_context(pty_for(py.url)), "telnet(rfc2217),tcp", workdir))
        ways: dict[str, Callable[[], dict[str, float]]] = {
            "local socket://": lambda: measure(lambda: ours(local.url), args.execs),
            "raw TCP (ser2net)": lambda: measure(lambda: ours(f"socket://127.0.0.1:{raw_port}"), args.execs),
            "RFC 2217, ours": lambda: measure(lambda: ours(f"rfc2217://127.0.0.1:{net_port}"), args.execs),
            "RFC 2217, pyserial": lambda: measure(lambda: pyserial(f"rfc2217://127.0.0.1:{py_port}"), args.execs),
        }
        for _ in range(args.rounds):
            for label, way in ways.items():
                rows.setdefault(label, []).append(way())
        if importlib.util.find_spec("labgrid") is not None:
            place_opens = [place_open(raw_port, workdir) for _ in range(args.rounds)]
    print(f"emulated micro:bits (MicroPython 1.9.2), {args.rounds} rounds, medians; the machine may be loaded")
    print(f"{'way':<20} {'open':>9} {'exec rtt':>10} {'put text':>13} {'put binary':>13}")
    base = statistics.median(r["exec"] for r in rows["raw TCP (ser2net)"])
    for label, runs in rows.items():
        m = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(
            f"{label:<20} {m['open'] * 1000:>6.0f} ms {m['exec'] * 1000:>7.2f} ms"
            f" {m['put text'] / 1024:>7.1f} KiB/s {m['put binary'] / 1024:>7.1f} KiB/s"
            f"  (exec {m['exec'] / base:.2f}x raw TCP)"
        )
    if place_opens:
        print(f"labgrid place, from nothing to a connected board: {statistics.median(place_opens) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
