"""pytest-timeout and the farm, with its signal and thread methods, on emulated boards.

Its clock stops while the farm works (a board's lock, reset, recovery), and a
test it cuts off leaves a board the next test can use, with a health that says
what happened.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_boardfarm.emulator import MicrobitEmulator
from pytest_boardfarm.locks import BoardLock

from .procs import assert_no_emulators, marked
from .test_faults import BYSTANDER_TESTS, check_bystander
from .test_plugin import outcomes, run

pytest.importorskip("pytest_timeout")

METHODS = ["signal", "thread"]


@pytest.fixture
def victim() -> Iterator[MicrobitEmulator]:
    """A board served by an emulator outside the run, so it outlives a run that pytest-timeout ends."""
    emulator = MicrobitEmulator().start()
    yield emulator
    emulator.stop()


def write_farm(pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator) -> Path:
    locks = tmp_path / "locks"
    (pytester.path / "farm.yaml").write_text(
        f"locks: {{dir: {locks}}}\nboards:\n"
        f"  - {{name: victim, port: '{victim.url}'}}\n  - {{name: bystander, emulator: microbit}}\n"
    )
    return locks


@pytest.mark.parametrize("method", METHODS)
def test_the_clock_stops_while_the_farm_waits_for_the_board(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator, method: str
) -> None:
    """The board is locked by another run for longer than the test's timeout: the wait is the farm's."""
    locks = write_farm(pytester, tmp_path, victim)
    holder = BoardLock(locks, victim.url, run="another CI job")
    holder.acquire(1)
    release = threading.Timer(3.0, holder.release)  # three times the test's timeout, however loaded the machine
    pytester.makepyfile(
        test_suite="import pytest\n\n@pytest.mark.board(name='victim')\ndef test_quick(board):\n"
        "    assert board.eval('6 * 7') == 42\n"
    )
    release.start()
    try:
        result = run(pytester, "--farm", "farm.yaml", "--timeout", "1", "--timeout-method", method)
    finally:
        release.join()
    assert outcomes(result) == {"test_suite.py::test_quick[victim]": "PASSED"}, result.stdout.str()
    assert "Timeout" not in result.stdout.str()


TIMED_OUT_SUITE = (
    """
import pytest

@pytest.mark.timeout(1)
@pytest.mark.board(name="victim")
def test_timed_out(board):
    board.exec("while True:\\n    pass", timeout=60)

@pytest.mark.board(name="victim")
def test_next(board):
    assert board.eval("3 * 3") == 9

@pytest.mark.board(name="victim")
def test_and_the_next(board):
    assert board.eval("4 * 4") == 16
"""
    + BYSTANDER_TESTS
)


def victim_health(out: str) -> str:
    table = out.split("boardfarm: results per board")[1]
    return next(line for line in table.splitlines() if line.startswith("victim")).split("s  ", 1)[1].strip()


def test_signal_method_a_timed_out_test_leaves_its_board_recovered(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator
) -> None:
    write_farm(pytester, tmp_path, victim)
    pytester.makepyfile(test_suite=TIMED_OUT_SUITE)
    # --timeout 5 on every test, and the board's 10 s deadline: a busy board would time the next setup out
    with marked() as mark:
        result = run(pytester, "--farm", "farm.yaml", "--timeout", "5", "--timeout-method", "signal")
    assert_no_emulators(mark)
    got = outcomes(result)
    assert got["test_suite.py::test_timed_out[victim]"] == "FAILED"
    assert got["test_suite.py::test_next[victim]"] == "PASSED"
    assert got["test_suite.py::test_and_the_next[victim]"] == "PASSED"
    check_bystander(got)
    out = result.stdout.str()
    assert "Timeout (>1.0s) from pytest-timeout" in out
    assert out.count("Timeout (>") == 2  # the test's failure and its short summary line: no setup died of it
    assert victim_health(out) == "ok (recovered 1x)"  # not a plain "ok"


def test_thread_method_under_xdist_the_next_tests_get_a_recovered_board(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator
) -> None:
    """The thread method ends the worker process; xdist's replacement finds the board busy and recovers it."""
    write_farm(pytester, tmp_path, victim)
    pytester.makepyfile(test_suite=TIMED_OUT_SUITE)
    with marked() as mark:
        result = run(pytester, "--farm", "farm.yaml", "--timeout-method", "thread", "-n", "2", "-p", "no:randomly")
    assert_no_emulators(mark)
    got = outcomes(result)
    assert got["test_suite.py::test_timed_out[victim]"] == "FAILED"  # reported once, as the crash it was
    assert got["test_suite.py::test_next[victim]"] == "PASSED"
    assert got["test_suite.py::test_and_the_next[victim]"] == "PASSED"
    check_bystander(got)
    assert "worker 'gw" in result.stdout.str() and "crashed while running" in result.stdout.str()


def test_thread_method_without_xdist_ends_the_run_and_the_next_run_gets_the_board(
    pytester: pytest.Pytester, tmp_path: Path, victim: MicrobitEmulator
) -> None:
    locks = write_farm(pytester, tmp_path, victim)
    pytester.makepyfile(test_suite=TIMED_OUT_SUITE)
    with marked() as mark:
        first = run(pytester, "--farm", "farm.yaml", "--timeout-method", "thread", "-p", "no:randomly")
    assert_no_emulators(mark)  # the bystander's QEMU died with the run
    assert first.ret != 0 and "Timeout" in first.stdout.str()
    assert BoardLock(locks, victim.url).is_free()  # the kernel released the lock with the process
    second = run(pytester, "--farm", "farm.yaml", "--board", "victim", "-k", "next")
    assert outcomes(second) == {
        "test_suite.py::test_next[victim]": "PASSED",
        "test_suite.py::test_and_the_next[victim]": "PASSED",
    }
