"""Puts in a row on a small board: failures, free heap, throughput.

On one emulated micro:bit (MicroPython 1.9.2, ~9 KB of heap), right after a
soft reset: ``--puts`` puts of 2 KB and as many of 12 KB binary data, each of
data no earlier put sent; then ``ls`` of 50 small files after soft resets and
a first deploy of those files. Counts failures (the target is 0) and prints the
board's free heap before and after. Asserts nothing about timings.

    python bench/bench_memory.py [--puts 100] [--ls 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pytest_boardfarm import Board, BoardError, connect
from pytest_boardfarm.emulator import MicrobitEmulator


def binary(size: int, seed: int) -> bytes:
    return bytes((i * 131 + seed * 7 + (i >> 8) * seed) % 256 for i in range(size))


def mem_free(board: Board) -> int | str:
    try:
        return int(board.eval("__import__('gc').collect() or __import__('gc').mem_free()"))
    except BoardError as exc:
        return f"unknown ({type(exc).__name__})"


def attempt(failures: Counter[str], fn: Callable[[], object]) -> float | None:
    """Seconds ``fn`` took, or None (the failure counted by exception type)."""
    start = time.perf_counter()
    try:
        fn()
    except BoardError as exc:
        failures[f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:80]}"] += 1
        return None
    return time.perf_counter() - start


def puts(board: Board, size: int, count: int) -> None:
    board.soft_reset()
    before = mem_free(board)
    failures: Counter[str] = Counter()
    rates = []
    for seed in range(count):
        data = binary(size, seed)
        took = attempt(failures, lambda d=data: board.put(d, "bench.bin"))  # type: ignore[misc]
        if took:
            rates.append(size / took / 1024)
    after = mem_free(board)
    rate = f"{statistics.median(rates):.1f} KiB/s median" if rates else "-"
    print(f"{count} puts of {size // 1024} KB: {sum(failures.values())} failed; {rate}; free heap {before} -> {after}")
    for what, n in failures.most_common():
        print(f"    {n} x {what}")
    attempt(Counter(), lambda: board.remove("bench.bin"))


def fifty_files(board: Board, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp)
        for i in range(50):
            (app / f"file_{i:02}.py").write_text(f"VALUE = {i}\n")
        failures: Counter[str] = Counter()
        for entry in board.ls():
            board.remove(entry.name)
        board.soft_reset()
        attempt(failures, lambda: board.deploy(app))
        print(f"first deploy of 50 files after a soft reset: {sum(failures.values())} failed")
        failures.clear()
        for _ in range(rounds):
            board.soft_reset()
            attempt(failures, lambda: board.ls())
        print(f"ls of 50 files after a soft reset, {rounds} times: {sum(failures.values())} failed")
        for what, n in failures.most_common():
            print(f"    {n} x {what}")
        for entry in board.ls():
            board.remove(entry.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--puts", type=int, default=100)
    parser.add_argument("--ls", type=int, default=10)
    args = parser.parse_args()
    with MicrobitEmulator() as emu, connect(emu.url) as board:
        print(f"one emulated micro:bit: {board.info.firmware}")
        puts(board, 2 * 1024, args.puts)
        puts(board, 12 * 1024, args.puts)
        fifty_files(board, args.ls)


if __name__ == "__main__":
    main()
