"""Device tests: 40 output tests on emulated micro:bits, against mpremote and run-tests.py's way.

- pytest-boardfarm: ``pytest --farm`` over a directory of 40 output tests (``foo.py`` +
  ``foo.py.exp``) on one board, then on four with ``-n 4`` (each board runs all 40);
- ``mpremote connect URL run foo.py``, one process per file, as a shell loop would;
- MicroPython's ``tests/run-tests.py`` approach: one client, and per file a raw REPL run
  after a soft reset, one file after another (here with mpremote's transport, which is
  pyboard.py's successor);
- the per-function overhead: a module of 40 device test functions, each doing a fixed
  amount of work, against the same 40 bodies run back to back in one exec (the board's
  own work).

Prints figures; asserts nothing about timings. The machine may be shared: say so when quoting.

    python bench/bench_devtests.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from mpremote.transport_serial import SerialTransport as MpremoteTransport

from pytest_boardfarm import connect
from pytest_boardfarm.emulator import start_many

FILES = 40
WORK = "t = 0\nfor i in range({n}):\n    t += i * i\nprint({k}, t)\n"
# Board work that waits rather than computes (as tests of sensors and timing do): on emulated
# boards it leaves the host's CPU free, so four boards can show what the farm does in parallel.
WAITING = "import microbit\nmicrobit.sleep(150)\nprint({k})\n"


def function(name: str, k: int) -> str:
    """A function whose body is one output test's work (n=500)."""
    body = WORK.format(n=500, k=k).strip().replace("\n", "\n    ")
    return f"def {name}():\n    {body}\n"


def expected(n: int, k: int) -> str:
    return f"{k} {sum(i * i for i in range(n))}\n"


def make_project(root: Path, boards: list[str]) -> tuple[Path, list[Path]]:
    device = root / "device"
    device.mkdir()
    files = []
    for k in range(FILES):
        n = 200 + 10 * k
        path = device / f"out_{k:02d}.py"
        path.write_text(WORK.format(n=n, k=k))
        Path(f"{path}.exp").write_text(expected(n, k))
        files.append(path)
    bodies = "\n".join(function(f"test_{k:02d}", k) for k in range(FILES))
    waiting = root / "waiting"
    waiting.mkdir()
    for k in range(FILES):
        (waiting / f"wait_{k:02d}.py").write_text(WAITING.format(k=k))
        (waiting / f"wait_{k:02d}.py.exp").write_text(f"{k}\n")
    (root / "functions").mkdir()
    (root / "functions" / "test_functions.py").write_text(bodies)
    farm = "boards:\n" + "".join(f"  - {{name: b{i}, port: '{url}', timeout: 30}}\n" for i, url in enumerate(boards))
    (root / "farm.yaml").write_text(f"locks: {{dir: {root / 'locks'}}}\n{farm}")
    (root / "pytest.ini").write_text("[pytest]\nboardfarm_device_tests =\n    device\n    functions\n    waiting\n")
    return device, files


def pytest_run(root: Path, *args: str) -> tuple[float, float, int]:
    """Wall time of the whole run, the busiest board's sum of test durations (JUnit), tests passed."""
    junit = root / "junit.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    command += ["--farm", "farm.yaml", "--farm-junit", str(junit), "--farm-log-dir", "", *args]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - start
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    failed = [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
    if result.returncode != 0 or failed:
        raise SystemExit(f"pytest failed:\n{result.stdout[-3000:]}")
    busiest = max(sum(float(c.get("time") or 0) for c in suite.iter("testcase")) for suite in ET.parse(junit).getroot())
    return wall, busiest, len(cases)


def mpremote_per_file(url: str, files: list[Path]) -> float:
    start = time.perf_counter()
    for path in files:
        out = subprocess.run(
            [sys.executable, "-m", "mpremote", "connect", url, "run", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        if out.replace("\r\n", "\n") != Path(f"{path}.exp").read_text():
            raise SystemExit(f"mpremote: {path.name} printed {out!r}")
    return time.perf_counter() - start


def run_tests_way(url: str, files: list[Path]) -> float:
    transport = MpremoteTransport(url, baudrate=115200)
    try:
        start = time.perf_counter()
        for path in files:
            transport.enter_raw_repl(soft_reset=True)
            out = transport.exec(path.read_bytes()).decode().replace("\r\n", "\n")
            if out != Path(f"{path}.exp").read_text():
                raise SystemExit(f"run-tests way: {path.name} printed {out!r}")
        took = time.perf_counter() - start
        transport.exit_raw_repl()
        return took
    finally:
        transport.close()


def board_work(url: str) -> float:
    """One test body run 40 times in one exec: the board's own work per function (all 40
    at once do not fit a micro:bit's heap, which is why device tests go one at a time)."""
    with connect(url, timeout=60) as board:
        board.soft_reset()
        board.exec(function("f", 0))
        start = time.perf_counter()
        board.exec(f"for _ in range({FILES}):\n    f()")
        return (time.perf_counter() - start) / FILES


def main() -> None:
    emulators = start_many(4)
    try:
        urls = [e.url for e in emulators]
        with tempfile.TemporaryDirectory() as tmp:
            one, four = Path(tmp, "one"), Path(tmp, "four")
            one.mkdir()
            four.mkdir()
            _, files = make_project(one, urls[:1])
            make_project(four, urls)
            ours_wall, ours_tests, count = pytest_run(one, "device")
            four_wall, four_tests, four_count = pytest_run(four, "device", "-n", "4")
            functions_wall, functions_tests, functions = pytest_run(one, "functions")
            wait_one, _, _ = pytest_run(one, "waiting", "-n", "1")
            wait_four, _, wait_count = pytest_run(four, "waiting", "-n", "4")
            theirs = mpremote_per_file(urls[0], files)
            pyboard = run_tests_way(urls[0], files)
            work = board_work(urls[0])
    finally:
        for emulator in emulators:
            emulator.stop()
    print(f"{FILES} output tests on emulated micro:bits (MicroPython 1.9.2); one run, shared 2-core machine")
    print(f"{'way':<44} {'seconds':>8} {'per file':>9} {'vs ours':>8}")
    rows = [
        ("pytest-boardfarm, 1 board (whole run)", ours_wall),
        ("pytest-boardfarm, 1 board (tests only)", ours_tests),
        ("mpremote run, one process per file", theirs),
        ("run-tests.py way (soft reset + raw run)", pyboard),
    ]
    for label, seconds in rows:
        print(f"{label:<44} {seconds:8.2f} {seconds / FILES * 1000:7.0f}ms {seconds / ours_wall:7.1f}x")
    print(
        f"4 boards, -n 4: {four_count} tests in {four_wall:.2f}s; throughput "
        f"{four_count / four_wall:.1f} tests/s against {count / ours_wall:.1f} on 1 board: "
        f"{(four_count / four_wall) / (count / ours_wall):.2f}x; tests only (the busiest board's time): "
        f"{(four_count / four_tests) / (count / ours_tests):.2f}x"
    )
    print(
        f"waiting tests (150 ms of sleep on the board each), -n 1 against -n 4: {FILES} tests in {wait_one:.2f}s, "
        f"{wait_count} in {wait_four:.2f}s: {(wait_count / wait_four) / (FILES / wait_one):.2f}x the throughput"
    )
    per_function = functions_tests / functions
    print(
        f"{functions} device test functions: {per_function * 1000:.1f} ms each (tests only; whole run "
        f"{functions_wall:.2f}s); the board's own work {work * 1000:.1f} ms each; "
        f"overhead {(per_function - work) * 1000:.1f} ms per function"
    )


if __name__ == "__main__":
    main()
