"""Fault injection: real farms fail in real ways; the run carries on and says what happened.

Each test runs pytest on a two-board farm: a *victim*, an emulator this test
owns (so it can freeze, kill or flood it), and a *bystander*, an emulated board
the run starts itself, whose tests must all pass.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_boardfarm import connect
from pytest_boardfarm.emulator import MicrobitEmulator
from pytest_boardfarm.timelimit import limit_for

from .procs import assert_no_emulators, marked
from .tcprelay import TcpRelay
from .test_plugin import outcomes, run


@pytest.fixture
def victim() -> Iterator[MicrobitEmulator]:
    emulator = MicrobitEmulator().start()
    yield emulator
    emulator.stop()


def farm(pytester: pytest.Pytester, tmp_path: Path, victim_url: str, extra: str = "") -> None:
    (pytester.path / "farm.yaml").write_text(
        f"locks: {{dir: {tmp_path / 'locks'}}}\nboards:\n"
        f"  - {{name: victim, port: '{victim_url}', timeout: 2{extra}}}\n"
        "  - {name: bystander, emulator: microbit}\n"
    )


def faulty_run(pytester: pytest.Pytester, suite: str, *args: str, limit: float = 60) -> tuple[pytest.RunResult, float]:
    """Run the suite; check it ends in time and leaves no emulator of its own behind."""
    pytester.makepyfile(test_suite=suite)
    with marked() as mark:
        start = time.monotonic()
        result = run(pytester, "--farm", "farm.yaml", *args)
        took = time.monotonic() - start
    assert took < limit, f"the run took {took:.1f}s"
    assert_no_emulators(mark)
    return result, took


def start_run(
    pytester: pytest.Pytester, started: Path, boards: int, *args: str, **popen: object
) -> subprocess.Popen[str]:
    """Start pytest in the background; return once ``boards`` tests wrote to ``started``."""
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--farm", "farm.yaml", *args]
    proc: subprocess.Popen[str] = subprocess.Popen(cmd, cwd=pytester.path, text=True, **popen)  # type: ignore[call-overload]
    for _ in range(600):
        if started.exists() and len(started.read_text().split()) >= boards:
            return proc
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the run's tests never started")


BYSTANDER_TESTS = """
def test_first(board):
    assert board.eval("1 + 1") == 2

def test_second(board):
    assert board.eval("2 + 2") == 4
"""


def check_bystander(got: dict[str, str]) -> None:
    assert got["test_suite.py::test_first[bystander]"] == "PASSED"
    assert got["test_suite.py::test_second[bystander]"] == "PASSED"


def test_endless_loop_is_stopped_by_the_test_deadline(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator
) -> None:
    farm(pytester, tmp_path, victim.url)
    suite = (
        """
import pytest

@pytest.mark.board(name="victim", timeout=1)
def test_endless(board):
    board.exec("while True:\\n    pass")
"""
        + BYSTANDER_TESTS
    )
    result, took = faulty_run(pytester, suite, "-n", "2")
    got = outcomes(result)
    assert got["test_suite.py::test_endless[victim]"] == "FAILED"
    assert got["test_suite.py::test_first[victim]"] == "PASSED"  # interrupted, and usable again
    check_bystander(got)
    assert "timed out after 1s" in result.stdout.str() and "interrupted and is usable again" in result.stdout.str()


def test_command_line_deadline_overrides_the_marker(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator
) -> None:
    farm(pytester, tmp_path, victim.url)
    suite = """
import pytest

@pytest.mark.board(name="victim", timeout=30)
def test_slow(board):
    board.exec("import microbit\\nmicrobit.sleep(3000)")
"""
    result, took = faulty_run(pytester, suite, "--farm-timeout", "0.5")
    assert outcomes(result)["test_suite.py::test_slow[victim]"] == "FAILED"
    assert "timed out after 0.5s" in result.stdout.str()


FROZEN_SUITE = (
    """
import os, signal, pytest

@pytest.mark.board(name="victim")
def test_freezes(board):
    os.kill(int(os.environ["VICTIM_PID"]), signal.SIGSTOP)  # a hard-faulted MCU goes silent
    board.exec("print('anyone there?')")

@pytest.mark.board(name="victim")
def test_after_the_freeze(board):
    assert board.eval("3 * 3") == 9
"""
    + BYSTANDER_TESTS
)


def test_frozen_board_is_quarantined_and_the_farm_carries_on(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    farm(pytester, tmp_path, victim.url)
    monkeypatch.setenv("VICTIM_PID", str(victim.pid))
    result, took = faulty_run(pytester, FROZEN_SUITE, "-n", "2", "--farm-junit", "junit.xml")
    got = outcomes(result)
    assert got["test_suite.py::test_freezes[victim]"] == "FAILED"
    assert got["test_suite.py::test_after_the_freeze[victim]"] == "ERROR"
    check_bystander(got)
    out = result.stdout.str()
    assert "recovery of victim:" in out
    for step in ("interrupt: failed", "soft reset: failed", "reconnect: failed"):
        assert step in out
    assert "board victim quarantined: did not recover (interrupt; soft reset; reconnect tried)" in out
    table = out.split("boardfarm: results per board")[1]
    assert "quarantined" in next(line for line in table.splitlines() if line.startswith("victim"))


def test_frozen_board_comes_back_with_its_reset_command(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The farm's hard-reset command: here it thaws the emulator; on a real farm, uhubctl power-cycles a port.
    farm(pytester, tmp_path, victim.url, extra=f", reset: [kill, -CONT, '{victim.pid}']")
    monkeypatch.setenv("VICTIM_PID", str(victim.pid))
    result, took = faulty_run(pytester, FROZEN_SUITE)
    got = outcomes(result)
    assert got["test_suite.py::test_freezes[victim]"] == "FAILED"
    assert got["test_suite.py::test_after_the_freeze[victim]"] == "PASSED"
    check_bystander(got)
    out = result.stdout.str()
    assert f"hard reset: ok - ran kill -CONT {victim.pid}" in out
    assert "ok (recovered 1x)" in out.split("boardfarm: results per board")[1]


def test_board_that_disappears_is_quarantined(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    farm(pytester, tmp_path, victim.url)
    monkeypatch.setenv("VICTIM_PID", str(victim.pid))
    suite = (
        """
import os, signal, pytest

@pytest.mark.board(name="victim")
def test_unplugged(board):
    os.kill(int(os.environ["VICTIM_PID"]), signal.SIGKILL)  # the USB hub drops the port
    board.exec("print('still there?')")

@pytest.mark.board(name="victim")
def test_later(board):
    pass
"""
        + BYSTANDER_TESTS
    )
    result, took = faulty_run(pytester, suite, "-n", "2", limit=40)
    got = outcomes(result)
    assert got["test_suite.py::test_unplugged[victim]"] == "FAILED"
    assert got["test_suite.py::test_later[victim]"] == "ERROR"
    check_bystander(got)
    assert "ConnectionLost" in result.stdout.str() and "board victim quarantined" in result.stdout.str()


def test_emulated_board_that_disappears_comes_back(pytester: pytest.Pytester, tmp_path: Path) -> None:
    (pytester.path / "app").mkdir()
    (pytester.path / "app" / "lib.py").write_text("VALUE = 7\n")
    (pytester.path / "farm.yaml").write_text(
        f"locks: {{dir: {tmp_path}}}\nboards:\n  - {{name: sim, emulator: microbit, deploy: app}}\n"
    )
    suite = """
import os, signal
from tests_helpers import kill_emulator_of

def test_killed(board):
    kill_emulator_of(board)
    board.exec("print('hello?')")

def test_back(board):
    assert board.eval("__import__('lib').VALUE") == 7  # restarted, and the app deployed again
"""
    (pytester.path / "tests_helpers.py").write_text(
        "import os, signal\n"
        "def kill_emulator_of(board):\n"
        "    port = board._transport.url.rsplit(':', 1)[1]\n"
        "    for entry in os.listdir('/proc'):\n"
        "        if entry.isdigit():\n"
        "            try:\n"
        "                cmd = open(f'/proc/{entry}/cmdline', 'rb').read()\n"
        "            except OSError:\n"
        "                continue\n"
        "            if b'qemu-system-arm' in cmd and f'127.0.0.1:{port},'.encode() in cmd:\n"
        "                os.kill(int(entry), signal.SIGKILL)\n"
    )
    result, took = faulty_run(pytester, suite)
    got = outcomes(result)
    assert got == {"test_suite.py::test_killed[sim]": "FAILED", "test_suite.py::test_back[sim]": "PASSED"}
    assert "hard reset: ok - restarted the emulator" in result.stdout.str()


def test_board_that_reboots_itself_mid_test(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator
) -> None:
    farm(pytester, tmp_path, victim.url)
    suite = (
        """
import pytest

@pytest.mark.board(name="victim", timeout=10)
def test_reboots(board):
    board.exec("import microbit\\nprint('rebooting')\\nmicrobit.reset()")

@pytest.mark.board(name="victim")
def test_after_reboot(board):
    assert board.eval("'fine'") == "fine"
"""
        + BYSTANDER_TESTS
    )
    result, took = faulty_run(pytester, suite, "-n", "2")
    got = outcomes(result)
    assert got["test_suite.py::test_reboots[victim]"] == "FAILED"
    assert got["test_suite.py::test_after_reboot[victim]"] == "PASSED"
    check_bystander(got)
    out = result.stdout.str()
    assert "BoardRebooted" in out and "the board rebooted while running code" in out
    assert "timed out" not in out  # seen at once, not after the 10 s deadline


def test_device_errors_in_fixture_setup(pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator) -> None:
    farm(pytester, tmp_path, victim.url)
    pytester.makeconftest(
        """
import pytest

@pytest.fixture
def big_buffer(board):
    board.exec("buf = bytearray(20000)")

@pytest.fixture
def configured(board):
    board.exec("raise ValueError('bad calibration %d' % 42)")
"""
    )
    suite = """
def test_needs_memory(big_buffer):
    pass

def test_needs_config(configured):
    pass

def test_plain(board):
    assert board.eval("5") == 5
"""
    result, took = faulty_run(pytester, suite, "-n", "2")
    got = outcomes(result)
    for name in ("victim", "bystander"):
        assert got[f"test_suite.py::test_needs_memory[{name}]"] == "ERROR"
        assert got[f"test_suite.py::test_needs_config[{name}]"] == "ERROR"
        assert got[f"test_suite.py::test_plain[{name}]"] == "PASSED"
    out = result.stdout.str()
    assert "MemoryError: memory allocation failed" in out
    assert "ValueError: bad calibration 42" in out


def test_busy_main_py_printing_at_boot(pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator) -> None:
    with connect(victim.url) as board:
        board.put(b"n = 0\nwhile True:\n    print('sensor', n)\n    n += 1\n", "main.py")
    victim.hard_reset()
    time.sleep(0.3)  # let main.py flood the line
    farm(pytester, tmp_path, victim.url)
    try:
        result, took = faulty_run(pytester, BYSTANDER_TESTS, "-n", "2")
    finally:
        with connect(victim.url) as board:
            board.remove("main.py")
    got = outcomes(result)
    assert (
        got["test_suite.py::test_first[victim]"] == "PASSED" and got["test_suite.py::test_second[victim]"] == "PASSED"
    )
    check_bystander(got)


NOISE = bytes(random.Random(7).randrange(256) for _ in range(300)) + b"\r\n>>> raw REPL; CTRL-B\x04\x04>OK"


def test_noise_on_the_line_before_the_banner(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator
) -> None:
    proxy = TcpRelay(victim.url, greeting=NOISE)  # line noise before each connection
    try:
        farm(pytester, tmp_path, proxy.url)
        result, took = faulty_run(pytester, BYSTANDER_TESTS, "-n", "2")
    finally:
        proxy.close()
    got = outcomes(result)
    assert (
        got["test_suite.py::test_first[victim]"] == "PASSED" and got["test_suite.py::test_second[victim]"] == "PASSED"
    )
    check_bystander(got)


def test_killed_run_then_the_next_run_gets_every_board(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator
) -> None:
    farm(pytester, tmp_path, victim.url)
    started = tmp_path / "started"
    pytester.makepyfile(
        test_hang=f"""
import time
def test_hang(board):
    open({str(started)!r}, "a").write(board.name + "\\n")
    if board.name == "bystander":
        time.sleep(60)
"""
    )
    with marked() as mark:
        proc = start_run(pytester, started, 2, "-n", "2", stdout=subprocess.DEVNULL, start_new_session=True)
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers, as a CI runner would
    proc.wait(timeout=10)
    assert_no_emulators(mark)
    (pytester.path / "test_hang.py").unlink()
    result, took = faulty_run(pytester, BYSTANDER_TESTS, "--farm-lock-timeout", "2")
    got = outcomes(result)
    assert all(v == "PASSED" for v in got.values()) and len(got) == 4


CRASH_SUITE = (
    """
import os, signal, pytest

@pytest.mark.board(name="victim")
def test_crashes_its_worker(board):
    os.kill(os.getpid(), signal.SIGKILL)  # a segfaulting C extension, the OOM killer

@pytest.mark.board(name="victim")
def test_after_the_crash(board):
    assert board.eval("3 * 3") == 9
"""
    + BYSTANDER_TESTS
)


def test_a_test_that_crashes_its_worker_runs_once_and_the_board_goes_on(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator
) -> None:
    farm(pytester, tmp_path, victim.url)
    result, took = faulty_run(pytester, CRASH_SUITE, "-n", "2", "--farm-lock-timeout", "10")
    got = outcomes(result)
    assert got["test_suite.py::test_crashes_its_worker[victim]"] == "FAILED"
    assert got["test_suite.py::test_after_the_crash[victim]"] == "PASSED"  # on the replacement worker
    check_bystander(got)
    out = result.stdout.str()
    assert out.count("replacing crashed worker") == 1, out  # before: once per retry, until xdist gave up


def test_sigterm_ends_the_run_cleanly_with_partial_reports(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator
) -> None:
    farm(pytester, tmp_path, victim.url)
    started = tmp_path / "started"
    pytester.makepyfile(
        test_hang=f"""
import time
def test_a(board):
    pass

def test_hang(board):
    open({str(started)!r}, "a").write(board.name + "\\n")
    time.sleep(60)

def test_never(board):
    pass
"""
    )
    with marked() as mark:
        proc = start_run(pytester, started, 1, "--farm-junit", "junit.xml", stdout=subprocess.PIPE)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2, out  # pytest's "interrupted"
    assert "KeyboardInterrupt" in out
    assert_no_emulators(mark)
    assert list((tmp_path / "locks").iterdir()) == []
    suites = {s.get("name"): s for s in ET.parse(pytester.path / "junit.xml").getroot()}
    names = {c.get("name") for s in suites.values() for c in s.findall("testcase")}
    assert "test_a[victim]" in names and "test_never[bystander]" in names  # reported, even if never run


def test_stopped_xdist_run_has_its_junit_file_before_its_workers_are_down(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator
) -> None:
    # Only the controller gets the signal (`docker stop`, a CI runner stopping the main
    # process): xdist then waits up to 10 s for workers busy in a test before killing
    # them, and the stopper's SIGKILL may come first. The report must already be there.
    farm(pytester, tmp_path, victim.url)
    started = tmp_path / "started"
    pytester.makepyfile(
        test_hang=f"""
import time
def test_hang(board):
    open({str(started)!r}, "a").write(board.name + "\\n")
    time.sleep(30)

def test_never(board):
    pass
"""
    )
    with marked() as mark:
        proc = start_run(
            pytester,
            started,
            2,
            "-n",
            "2",
            "--farm-junit",
            "junit.xml",
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        proc.send_signal(signal.SIGTERM)
        junit = pytester.path / "junit.xml"
        for _ in range(80):  # a stopper's grace period, shorter than xdist's 10 s
            if junit.exists():
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the workers the controller had no time to stop
    assert_no_emulators(mark)
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    assert set(cases) == {"test_hang[victim]", "test_hang[bystander]", "test_never[victim]", "test_never[bystander]"}
    for name in ("test_hang[victim]", "test_hang[bystander]"):
        error = cases[name].find("error")
        assert error is not None and "interrupted" in str(error.get("message")), name  # never "passed"


HOST_HANG_SUITE = (
    """
import time, pytest

@pytest.mark.board(name="victim", test_timeout=1)
def test_hangs_on_the_host(board):
    board.exec("x = 1")
    time.sleep(1e6)

@pytest.mark.board(name="victim", test_timeout=1)
def test_limit_hits_mid_exchange(board):
    board.exec("while True:\\n    pass", timeout=30)

@pytest.mark.board(name="victim")
def test_after(board):
    assert board.eval("3 * 3") == 9
"""
    + BYSTANDER_TESTS
)


@pytest.mark.parametrize("timeout_plugin", ["with-pytest-timeout", "without"])
def test_host_side_hang_is_bounded_by_the_wall_clock_limit(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator, timeout_plugin: str
) -> None:
    if timeout_plugin == "with-pytest-timeout":
        pytest.importorskip("pytest_timeout")
        args: list[str] = []  # installed, but timing no test: the farm's limit applies
    else:
        args = ["-p", "no:timeout"]
    farm(pytester, tmp_path, victim.url)
    result, took = faulty_run(pytester, HOST_HANG_SUITE, "-n", "2", *args)
    got = outcomes(result)
    assert got["test_suite.py::test_hangs_on_the_host[victim]"] == "FAILED"
    assert got["test_suite.py::test_limit_hits_mid_exchange[victim]"] == "FAILED"
    assert got["test_suite.py::test_after[victim]"] == "PASSED"  # the board was checked, and recovered
    check_bystander(got)
    out = result.stdout.str()
    limit = "HostTimeLimitExceeded: the test exceeded its wall-clock limit of 1 s on the host"
    raised = [line for line in out.splitlines() if line.startswith("E ") and limit in line]
    assert len(raised) == 2  # in the two tests over their limit, and no other (not counting the short summary)
    table = out.split("boardfarm: results per board")[1]
    assert "ok (recovered 1x)" in next(line for line in table.splitlines() if line.startswith("victim"))


def test_farm_limit_default_from_the_command_line(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator
) -> None:
    farm(pytester, tmp_path, victim.url)
    suite = """
import time, pytest

@pytest.mark.board(name="victim")
def test_hangs_on_the_host(board):
    time.sleep(1e6)

@pytest.mark.board(name="victim", test_timeout=0)
def test_may_take_its_time(board):
    time.sleep(1.5)
"""
    result, took = faulty_run(pytester, suite, "--farm-test-timeout", "1", "-p", "no:timeout")
    got = outcomes(result)
    assert got["test_suite.py::test_hangs_on_the_host[victim]"] == "FAILED"
    assert got["test_suite.py::test_may_take_its_time[victim]"] == "PASSED"
    assert "wall-clock limit of 1 s on the host" in result.stdout.str()


def test_farm_limit_default_from_the_ini_file(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator
) -> None:
    farm(pytester, tmp_path, victim.url)
    pytester.makeini("[pytest]\nboardfarm_test_timeout = 1\n")
    suite = """
import time, pytest

@pytest.mark.board(name="victim")
def test_hangs_on_the_host(board):
    time.sleep(1e6)
"""
    result, took = faulty_run(pytester, suite, "-p", "no:timeout")
    assert outcomes(result)["test_suite.py::test_hangs_on_the_host[victim]"] == "FAILED"
    assert "wall-clock limit of 1 s on the host" in result.stdout.str()


@pytest.mark.parametrize(
    ("ini", "args", "marker", "limit"),
    [
        ("", [], "", 600.0),
        ("boardfarm_test_timeout = 5", [], "", 5.0),
        ("boardfarm_test_timeout = 5", ["--farm-test-timeout", "7"], "", 7.0),
        ("boardfarm_test_timeout = 5", ["--farm-test-timeout", "7"], "@pytest.mark.board(test_timeout=0)", 0.0),
    ],
    ids=["default", "ini", "command-line", "marker"],
)
def test_the_host_limit_is_the_markers_else_the_command_lines_else_the_ini_files_else_600(
    pytester: pytest.Pytester, ini: str, args: list[str], marker: str, limit: float
) -> None:
    """README: --farm-test-timeout default 600, ini boardfarm_test_timeout; the marker's test_timeout wins."""
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_one=f"import pytest\n\n{marker}\ndef test_one():\n    pass\n")
    items, _ = pytester.inline_genitems(*args)
    assert [limit_for(item) for item in items] == [limit]


def test_pytest_timeout_does_not_poison_the_board(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator
) -> None:
    pytest.importorskip("pytest_timeout")
    (pytester.path / "farm.yaml").write_text(  # the default 10 s device deadline: longer than --timeout
        f"locks: {{dir: {tmp_path / 'locks'}}}\nboards:\n"
        f"  - {{name: victim, port: '{victim.url}'}}\n  - {{name: bystander, emulator: microbit}}\n"
    )
    suite = (
        """
import time, pytest

@pytest.mark.timeout(1)
@pytest.mark.board(name="victim", test_timeout=60)
def test_timed_out(board):
    board.exec("while True:\\n    pass", timeout=30)

@pytest.mark.board(name="victim")
def test_next(board):
    assert board.eval("3 * 3") == 9

@pytest.mark.board(name="victim")
def test_and_the_next(board):
    assert board.eval("4 * 4") == 16
"""
        + BYSTANDER_TESTS
    )
    # --timeout 5 for every test: the board's 10 s soft-reset deadline no longer hides a stuck board
    result, took = faulty_run(pytester, suite, "--timeout", "5")
    got = outcomes(result)
    assert got["test_suite.py::test_timed_out[victim]"] == "FAILED"
    assert got["test_suite.py::test_next[victim]"] == "PASSED"
    assert got["test_suite.py::test_and_the_next[victim]"] == "PASSED"
    check_bystander(got)
    out = result.stdout.str()
    assert "Timeout (>1.0s) from pytest-timeout" in out  # pytest-timeout owned that test's clock
    assert "wall-clock limit" not in out
    table = out.split("boardfarm: results per board")[1]
    assert "ok (recovered 1x)" in next(line for line in table.splitlines() if line.startswith("victim"))
