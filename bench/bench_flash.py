"""Flashing 4 boards in parallel against one board alone.

Two kinds of board, each flashed through the same pool code ``--farm-flash``
and ``boardfarm flash`` use:

- emulated: the micro:bit emulator restarted on a new image (built from
  Debian's firmware with an embedded script), then verified (``check`` and
  ``version``) and marked;
- command: a board on a port whose ``flash:`` command takes ``--flasher-seconds``
  (2 s by default, a small esptool write), then the port is looked for, the
  board verified and the marker written. (The emulators behind the ports are
  started by the bench; the command only sleeps: this measures the farm's side.)

Ratio = wall(4 boards) / wall(1 board), median of ``--repeat`` runs; the
target is under 1.5. Prints figures only; asserts nothing.

    python bench/bench_flash.py [--repeat 3] [--flasher-seconds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pytest_boardfarm import hexfile
from pytest_boardfarm.emulator import FIRMWARE, MicrobitEmulator, start_many
from pytest_boardfarm.inventory import load_farm
from pytest_boardfarm.pool import BoardPool


def flash_wall(farm_path: Path, names: list[str]) -> float:
    pool = BoardPool(load_farm(farm_path), flash=True, force=True)
    started = time.monotonic()
    try:
        pool.acquire_many(names)
        wall = time.monotonic() - started
        bad = [n for n in names if n not in pool.held]
        if bad:
            raise SystemExit(f"not flashed: {', '.join(pool.unavailable.get(n, n) for n in bad)}")
    finally:
        pool.release_all()
    return wall


def emulated_farm(directory: Path) -> Path:
    lines = ["boards:"]
    for i in range(4):
        lines += [f"  - name: sim-{i}", "    emulator: microbit", "    firmware:", "      image: app.hex"]
        lines += ["      check: 'APP_VERSION == 7'", "      version: 'v1\\.9\\.2'"]
    path = directory / "emulated.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def command_farm(directory: Path, boards: list[MicrobitEmulator], seconds: float) -> Path:
    lines = [f"locks: {{dir: {directory / 'locks'}}}", "boards:"]
    for i, emu in enumerate(boards):
        lines += [f"  - name: lab-{i}", f"    port: {emu.url}"]
        lines += [f"    flash: [{sys.executable}, -c, 'import time; time.sleep({seconds})', '{{image}}']"]
        lines += ["    firmware:", "      image: app.hex", "      version: 'v1\\.9\\.2'"]
    path = directory / "command.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def measure(label: str, farm: Path, names: list[str], repeat: int) -> None:
    one = statistics.median(flash_wall(farm, names[:1]) for _ in range(repeat))
    four = statistics.median(flash_wall(farm, names) for _ in range(repeat))
    print(f"{label:9}  1 board {one:6.2f}s   4 boards {four:6.2f}s   ratio {four / one:4.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--flasher-seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "app.hex").write_text(hexfile.embed_script(FIRMWARE.read_text(), "APP_VERSION = 7\n"))
        measure("emulated", emulated_farm(directory), [f"sim-{i}" for i in range(4)], args.repeat)
        boards = start_many(4)
        try:
            farm = command_farm(directory, boards, args.flasher_seconds)
            measure("command", farm, [f"lab-{i}" for i in range(4)], args.repeat)
        finally:
            for board in boards:
                board.stop()


if __name__ == "__main__":
    main()
