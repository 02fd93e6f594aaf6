"""Recovery that never takes the run down: deadlines, a deaf Ctrl-C, wedged boards, failed starts.

The end-to-end tests run pytest on a farm whose *victim* is an emulator this
test owns (see test_faults.py); a farm ``reset:`` command reaches it through a
small TCP control port served here, as a power switch would on a real farm.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_boardfarm import Board, connect
from pytest_boardfarm.emulator import EmulatorError, MicrobitEmulator
from pytest_boardfarm.errors import BoardError, BoardRebooted, BoardTimeout
from pytest_boardfarm.health import Ladder
from pytest_boardfarm.rawrepl import INTERRUPT_SECONDS, Pacing

from .fakes import FakeDevice
from .procs import assert_no_emulators, marked, marked_qemu_pids
from .tcprelay import TcpRelay
from .test_faults import BYSTANDER_TESTS, check_bystander, faulty_run, victim  # noqa: F401 - victim is a fixture
from .test_faults import farm as victim_farm
from .test_plugin import outcomes

RESET_CLIENT = """\
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
    s.recv(1)
"""


class ResetSwitch:
    """A farm's reset button for a test-owned emulator: each connection resets it once."""

    def __init__(self, emulator: MicrobitEmulator, tmp_path: Path) -> None:
        self.emulator = emulator
        self.presses = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.client = tmp_path / "press_reset.py"
        self.client.write_text(RESET_CLIENT)
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def command(self) -> str:
        """The farm.yaml ``reset`` value (a flow list: arguments, no shell)."""
        return f"[{sys.executable}, {self.client}, '{self.server.getsockname()[1]}']"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                self.emulator.hard_reset()
                self.presses += 1
                conn.sendall(b"k")

    def close(self) -> None:
        self.server.close()


class DeafRelay(TcpRelay):
    """Relays a TCP serial port but drops every Ctrl-C: a port that cannot interrupt running code."""

    def __init__(self, target: str) -> None:
        self.dropped = 0
        super().__init__(target, to_board=self._deaf)

    def _deaf(self, data: bytes) -> bytes:
        self.dropped += data.count(b"\x03")
        return data.replace(b"\x03", b"")


@pytest.fixture
def switch(victim: MicrobitEmulator, tmp_path: Path) -> Iterator[ResetSwitch]:  # noqa: F811
    reset = ResetSwitch(victim, tmp_path)
    yield reset
    reset.close()


def junit_times(path: Path) -> dict[str, float]:
    return {c.get("name", ""): float(c.get("time", "0")) for c in ET.parse(path).getroot().iter("testcase")}


# -- deadlines -----------------------------------------------------------------


def test_a_tiny_test_deadline_does_not_fail_the_next_health_check(
    pytester: pytest.Pytester,
    tmp_path: Path,
    victim: MicrobitEmulator,  # noqa: F811
) -> None:
    victim_farm(pytester, tmp_path, victim.url)
    suite = """
import pytest
from pytest_boardfarm.errors import BoardTimeout

@pytest.mark.parametrize("n", range(4))
@pytest.mark.board(name="victim", timeout=0.001)
def test_tiny(board, n):
    try:
        board.exec("import microbit\\nmicrobit.sleep(50)")
    except BoardTimeout:
        pass

@pytest.mark.board(name="victim")
def test_after(board):
    assert board.eval("1 + 2") == 3
"""
    result, _ = faulty_run(pytester, suite)
    got = outcomes(result)
    assert all(got[f"test_suite.py::test_tiny[victim-{n}]"] == "PASSED" for n in range(4)), got
    assert got["test_suite.py::test_after[victim]"] == "PASSED"
    out = result.stdout.str()
    assert "recovery of victim" not in out and "quarantined" not in out
    table = out.split("boardfarm: results per board")[1]
    assert next(line for line in table.splitlines() if line.startswith("victim")).endswith(" ok")


def test_entering_the_raw_repl_waits_as_long_as_the_caller_allows(emulator: MicrobitEmulator) -> None:
    # A loaded host: the board answers, only later than a fixed number of tries would wait.
    emulator.pause()
    thaw = threading.Timer(7.0, emulator.resume)
    thaw.start()
    try:
        start = time.monotonic()
        with connect(emulator.url, timeout=20) as board:
            assert board.eval("1 + 1") == 2
        assert time.monotonic() - start >= 6.5
    finally:
        thaw.cancel()
        emulator.resume()


def test_entering_the_raw_repl_gives_up_at_the_callers_deadline(emulator: MicrobitEmulator) -> None:
    emulator.pause()
    try:
        start = time.monotonic()
        with pytest.raises(BoardTimeout, match="could not enter the raw REPL within 2s"):
            connect(emulator.url, timeout=2)
        assert time.monotonic() - start < 10  # bounded by the deadline, not by a count of tries
    finally:
        emulator.resume()


FAKE_QEMU = """\
import socket, sys, time
# Binds the serial port QEMU would, then never says a word: firmware that does not boot.
serial = sys.argv[sys.argv.index("-serial") + 1]
port = int(serial.split(":")[2].split(",")[0])
server = socket.create_server(("127.0.0.1", port))
conn, _ = server.accept()
time.sleep(600)
"""


def test_failed_emulator_start_leaves_no_process(tmp_path: Path) -> None:
    fake = tmp_path / "qemu-system-arm"
    fake.write_text(f"#!{sys.executable}\n{FAKE_QEMU}")
    fake.chmod(0o755)
    emulator = MicrobitEmulator(qemu=str(fake))
    with marked() as mark, pytest.raises(EmulatorError, match="could not start an emulated micro:bit within 3s"):
        emulator.start(timeout=3)
    assert not emulator.running()
    assert_no_emulators(mark)


def test_an_emulator_whose_port_is_taken_says_so(tmp_path: Path) -> None:
    """A fixed port another program listens on: QEMU cannot bind it and exits. The start
    spent its whole deadline on the other program's port (which never printed a prompt)
    and said only that the raw REPL did not answer; QEMU's own words were lost."""
    with socket.create_server(("127.0.0.1", 0)) as taken, marked() as mark:
        emulator = MicrobitEmulator(port=taken.getsockname()[1])
        with pytest.raises(EmulatorError, match=r"exited on socket://.*(in use|bind)"):
            emulator.start(timeout=8)
        assert not emulator.running()
        assert_no_emulators(mark)


def test_fault_tests_see_only_their_own_emulators(emulator: MicrobitEmulator) -> None:
    with marked() as mark, MicrobitEmulator() as mine:
        assert marked_qemu_pids(mark) == {mine.pid}  # not the session's emulator, nor anyone else's
        assert emulator.running()
    assert_no_emulators(mark)


# -- reboots ---------------------------------------------------------------------


def test_file_helpers_are_loaded_again_after_a_reboot(mb: Board) -> None:
    assert not mb.exists("nothing.txt")  # loads the helpers into the board's RAM
    with pytest.raises(BoardRebooted):
        mb.exec("import microbit\nmicrobit.reset()")
    assert not mb.exists("nothing.txt")  # not NameError: _bf_size
    mb.put(b"back", "back.txt")
    assert mb.get("back.txt") == b"back"


# -- the ladder ---------------------------------------------------------------------


def test_any_failure_of_a_step_is_logged_and_the_ladder_goes_on() -> None:
    board = Board(FakeDevice(), name="fake", timeout=2, pacing=Pacing())  # type: ignore[arg-type]
    board.enter_raw_repl()
    checks = iter([ValueError("odd"), BoardError("still bad"), None])

    def check(_: Board) -> None:
        error = next(checks)
        if error:
            raise error

    def hard_reset() -> str:
        raise PermissionError(13, "Permission denied")

    log = Ladder(lambda: board, hard_reset, lambda: None, check).climb("fake")
    assert [(s.name, s.ok) for s in log.steps] == [
        ("interrupt", False),
        ("soft reset", False),
        ("hard reset", False),
        ("reconnect", True),
    ]
    assert log.steps[0].detail.startswith("ValueError: odd")
    assert "PermissionError" in log.steps[2].detail
    assert log.recovered


def test_a_reset_command_that_cannot_run_does_not_end_the_run(
    pytester: pytest.Pytester,
    tmp_path: Path,
    victim: MicrobitEmulator,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = tmp_path / "reset-hub"
    script.write_text("#!/bin/sh\n")  # not executable
    victim_farm(pytester, tmp_path, victim.url, extra=f", reset: ['{script}']")
    monkeypatch.setenv("VICTIM_PID", str(victim.pid))
    suite = (
        """
import os, signal, pytest

@pytest.mark.board(name="victim")
def test_freezes(board):
    os.kill(int(os.environ["VICTIM_PID"]), signal.SIGSTOP)
    board.exec("print('anyone there?')")

@pytest.mark.board(name="victim")
def test_later(board):
    pass
"""
        + BYSTANDER_TESTS
    )
    try:
        result, _ = faulty_run(pytester, suite, "-n", "2")
    finally:
        victim.resume()
    got = outcomes(result)
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    assert got["test_suite.py::test_freezes[victim]"] == "FAILED"
    assert got["test_suite.py::test_later[victim]"] == "ERROR"
    check_bystander(got)
    assert f"hard reset: failed - cannot run {script}: Permission denied" in out
    assert "board victim quarantined: did not recover" in out


def test_recovery_beyond_the_limit_quarantines_the_board_cleanly(
    pytester: pytest.Pytester,
    tmp_path: Path,
    victim: MicrobitEmulator,  # noqa: F811
) -> None:
    victim_farm(pytester, tmp_path, victim.url)
    suite = """
import pytest

@pytest.mark.parametrize("n", range(5))
@pytest.mark.board(name="victim")
def test_leaves_code_running(board, n):
    board._transport.write(b"while True:\\n    pass\\n\\x04")  # still running when the next test starts
"""
    result, _ = faulty_run(pytester, suite, limit=90)
    got = outcomes(result)
    out = result.stdout.str()
    assert "KeyError" not in out
    assert [got[f"test_suite.py::test_leaves_code_running[victim-{n}]"] for n in range(5)] == [
        "PASSED",
        "PASSED",
        "PASSED",
        "PASSED",
        "ERROR",
    ]
    assert "board victim quarantined: needed recovery 4 times in this run" in out


# -- boards that ignore Ctrl-C -------------------------------------------------------------


def test_runaway_test_on_a_board_deaf_to_ctrl_c_goes_straight_to_the_hard_reset(
    pytester: pytest.Pytester,
    tmp_path: Path,
    victim: MicrobitEmulator,  # noqa: F811
    switch: ResetSwitch,
) -> None:
    relay = DeafRelay(victim.url)
    stamps = tmp_path / "stamps"
    victim_farm(pytester, tmp_path, relay.url, extra=f", reset: {switch.command}")
    suite = f"""
import time, pytest

@pytest.mark.board(name="victim", timeout=1)
def test_runaway(board):
    open({str(stamps)!r}, "a").write("%f\\n" % time.monotonic())
    board.exec("while True:\\n    pass")

@pytest.mark.board(name="victim")
def test_after(board):
    open({str(stamps)!r}, "a").write("%f\\n" % time.monotonic())
    assert board.eval("2 * 21") == 42
"""
    try:
        start = time.monotonic()
        result, _ = faulty_run(pytester, suite, "--farm-junit", "junit.xml")
        took = time.monotonic() - start
    finally:
        relay.close()
    got = outcomes(result)
    out = result.stdout.str()
    assert got["test_suite.py::test_runaway[victim]"] == "FAILED"
    assert got["test_suite.py::test_after[victim]"] == "PASSED"
    assert relay.dropped > 0 and switch.presses == 1
    recovery = out.split("recovery of victim:")[1].split("\n-")[0]
    assert "hard reset: ok" in recovery
    assert "interrupt" not in recovery and "soft reset" not in recovery  # the deaf Ctrl-C is not retried
    runaway_at, after_at = (float(x) for x in stamps.read_text().split())
    usable = after_at - runaway_at - 1  # from the test's deadline to the next test running
    recovered_in = float(recovery.split()[0].rstrip("s"))
    times = junit_times(pytester.path / "junit.xml")
    # The test's time: its deadline, the one Ctrl-C it waited for, and the recovery after it.
    assert times["test_runaway[victim]"] >= 1 + INTERRUPT_SECONDS + recovered_in
    print(f"deadline -> usable: {usable:.2f}s; ladder {recovered_in:.2f}s; run {took:.1f}s")


# -- allocation ----------------------------------------------------------------------


STUBBORN = (
    b"while True:\n    try:\n        while True:\n            pass\n    except KeyboardInterrupt:\n        pass\n"
)


def wedge(emulator: MicrobitEmulator, source: bytes) -> None:
    """Leave the board as a crashed earlier run would: busy with ``source``, no one waiting.
    (Started by the board API, which paces it: ~90 bytes written at once could overrun the
    micro:bit's 64-byte receive buffer on a loaded host, and the board was never wedged.)"""
    with connect(emulator.url) as board:
        board.start(source)  # runs on after we hang up


def test_board_wedged_by_an_earlier_run_is_recovered_at_allocation(
    pytester: pytest.Pytester,
    tmp_path: Path,
    victim: MicrobitEmulator,  # noqa: F811
    switch: ResetSwitch,
) -> None:
    wedge(victim, STUBBORN)  # swallows every Ctrl-C: only a reset ends it
    victim_farm(pytester, tmp_path, victim.url, extra=f", reset: {switch.command}")
    result, _ = faulty_run(pytester, BYSTANDER_TESTS, "-n", "2")
    got = outcomes(result)
    assert (
        got["test_suite.py::test_first[victim]"] == "PASSED" and got["test_suite.py::test_second[victim]"] == "PASSED"
    )
    check_bystander(got)
    assert switch.presses == 1
    table = result.stdout.str().split("boardfarm: results per board")[1]
    assert "ok (recovered 1x)" in next(line for line in table.splitlines() if line.startswith("victim"))


def test_board_with_a_full_heap_is_recovered_at_allocation(
    pytester: pytest.Pytester,
    tmp_path: Path,
    victim: MicrobitEmulator,  # noqa: F811
) -> None:
    wedge(
        victim,
        b"_bf_junk = []\ntry:\n    while True:\n        _bf_junk.append(bytearray(64))\nexcept MemoryError:\n    pass",
    )
    victim_farm(pytester, tmp_path, victim.url)
    result, _ = faulty_run(pytester, BYSTANDER_TESTS)
    got = outcomes(result)
    assert (
        got["test_suite.py::test_first[victim]"] == "PASSED" and got["test_suite.py::test_second[victim]"] == "PASSED"
    )
    check_bystander(got)


def test_board_that_cannot_be_brought_back_is_quarantined_with_the_reason(
    pytester: pytest.Pytester,
    tmp_path: Path,
    victim: MicrobitEmulator,  # noqa: F811
) -> None:
    wedge(victim, STUBBORN)  # and no reset command
    victim_farm(pytester, tmp_path, victim.url)
    result, _ = faulty_run(pytester, BYSTANDER_TESTS)
    got = outcomes(result)
    assert got["test_suite.py::test_first[victim]"] == "ERROR"
    check_bystander(got)
    out = result.stdout.str()
    assert "board victim quarantined: " in out and "could not enter the raw REPL" in out
    assert "the recovery ladder did not bring it back" in out
