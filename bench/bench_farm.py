"""Parallel efficiency of the farm and the plugin's overhead per test.

Every board runs the same 40-test suite (the plugin runs each test on every
matching board), each test ~0.2 s of device work (microbit.sleep(180) plus a
short compute loop), on 1, 2, 4 and 8 emulated micro:bits with -n equal to the
board count. Ideal scaling keeps the wall time flat as boards are added:

    efficiency(N) = wall(1 board) / wall(N boards)

Overhead per test is the test's setup+call+teardown time minus the time spent
inside device calls (exec and the soft reset between tests), median over tests.
Runs with plugin autoloading off and only xdist and pytest-boardfarm loaded,
as in a project's own venv: this machine image also carries plugins such as
hypothesis's, which cost ~1 s of CPU in every xdist worker (pytest rewrites
the asserts of all its modules). ``--all-plugins`` measures with them.
Prints figures only; asserts nothing.

    python bench/bench_farm.py [--sizes 1 2 4 8] [--tests 40] [--all-plugins]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = """
import time, pytest

@pytest.mark.parametrize("i", range({tests}))
def test_device_work(board, i, record):
    start = time.perf_counter()
    board.exec("import microbit\\nmicrobit.sleep(180)\\nx = 0\\nfor i in range(2000):\\n    x += i")
    record(time.perf_counter() - start)
"""

CONFTEST = """
import os, time, pytest

@pytest.fixture
def record(request):
    spent = []
    request.node.device_time = spent
    return spent.append

@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = time.perf_counter()
    result = yield
    total = time.perf_counter() - start
    device = sum(getattr(item, "device_time", []))
    with open(os.environ["BENCH_RECORD"], "a") as f:
        f.write(f"{{item.nodeid}} {{total}} {{device}}\\n")
    return result

@pytest.fixture(autouse=True)
def _time_resets(request, monkeypatch):
    # Count the soft reset between tests as device work too.
    from pytest_boardfarm.board import Board
    original = Board.soft_reset
    def timed(self, timeout=None):
        start = time.perf_counter()
        try:
            return original(self, timeout)
        finally:
            getattr(request.node, "device_time", []).append(time.perf_counter() - start)
    monkeypatch.setattr(Board, "soft_reset", timed)
"""


def run_size(boards: int, tests: int, workdir: Path, all_plugins: bool) -> tuple[float, list[tuple[float, float]]]:
    farm = workdir / f"farm{boards}.yaml"
    farm.write_text(
        f"locks: {{dir: {workdir / 'locks'}}}\nboards:\n"
        + "".join(f"  - {{name: sim-{i + 1}, emulator: microbit}}\n" for i in range(boards))
    )
    record = workdir / f"record{boards}.txt"
    record.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--farm", str(farm), "-n", str(boards)]
    env = {**os.environ, "BENCH_RECORD": str(record)}
    if not all_plugins:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        cmd += ["-p", "xdist", "-p", "pytest_boardfarm.plugin"]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"run with {boards} boards failed:\n{result.stdout[-2000:]}")
    rows = []
    first_per_board: set[str] = set()
    for line in sorted(record.read_text().splitlines()):
        nodeid, total, device = line.rsplit(" ", 2)
        board = nodeid.split("[")[1].split("-")[0:2]
        key = "-".join(board)
        if key not in first_per_board:  # the first test also boots the emulator: not per-test overhead
            first_per_board.add(key)
            continue
        rows.append((float(total), float(device)))
    return wall, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--tests", type=int, default=40)
    parser.add_argument("--all-plugins", action="store_true", help="load every installed pytest plugin")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "test_bench.py").write_text(SUITE.format(tests=args.tests))
        (workdir / "conftest.py").write_text(CONFTEST.format())
        results = {n: run_size(n, args.tests, workdir, args.all_plugins) for n in args.sizes}
    base = results[args.sizes[0]][0]
    plugins = "every installed plugin" if args.all_plugins else "only xdist and pytest-boardfarm loaded"
    print(f"{args.tests} tests per board, ~0.19 s device work each; -n = boards; {os.cpu_count()} cores; {plugins}")
    print(f"{'boards':>6} {'tests':>6} {'wall s':>8} {'efficiency':>11} {'overhead/test':>14} {'device/test':>12}")
    for n, (wall, rows) in results.items():
        overhead = statistics.median(total - device for total, device in rows)
        device = statistics.median(device for _, device in rows)
        print(
            f"{n:>6} {n * args.tests:>6} {wall:>8.2f} {base / wall:>11.2f} {overhead * 1000:>11.2f} ms"
            f" {device * 1000:>9.1f} ms"
        )


if __name__ == "__main__":
    main()
