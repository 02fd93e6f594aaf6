"""Waiting for what a board prints: expect, start/stop, write, reboot, hard_reset.

Proven on an emulated micro:bit (MicroPython 1.9.2); the console buffer's
bookkeeping is pure logic, tested on the host.
"""

from __future__ import annotations

import re
import time

import pytest

from pytest_boardfarm import Board, BoardTimeout, DeviceError
from pytest_boardfarm.console import Console
from pytest_boardfarm.emulator import MicrobitEmulator

WAIT = 20  # generous: the machine is shared


def test_background_program_output_is_expected_then_stopped(mb: Board) -> None:
    mb.start("import time\nn = 0\nwhile True:\n    print('tick', n)\n    n += 1\n    time.sleep(0.05)\n")
    assert mb.running
    first = mb.expect(rb"tick (\d+)\r\n", timeout=WAIT)
    second = mb.expect(rb"tick (\d+)\r\n", timeout=WAIT)
    assert int(second.group(1)) == int(first.group(1)) + 1  # consumed up to each match's end
    mb.stop()
    assert not mb.running
    assert mb.exec("print(6 * 7)") == "42\n"  # the raw REPL is usable again


def test_output_printed_outside_an_exec_is_kept_and_the_exec_gets_its_own(mb: Board) -> None:
    mb.start("print('printed in the background')")  # ends by itself
    assert mb.exec("print('mine')") == "mine\n"  # the exec stopped the ended program first
    assert mb.expect_exact("printed in the background", timeout=WAIT)


def test_expect_timeout_shows_the_tail_of_the_output(mb: Board) -> None:
    mb.start("print('the tail the message shows')\nimport time\ntime.sleep(60)")
    mb.expect_exact("the tail", timeout=WAIT)
    with pytest.raises(BoardTimeout, match="never printed") as caught:
        mb.expect("never printed", timeout=1)
    message = str(caught.value)  # as the README shows it
    assert "timed out after 1s waiting for b'never printed'; the last output was: '" in message
    assert message.endswith("the tail the message shows\\n'")
    mb.stop()


def test_expect_takes_str_bytes_or_compiled_and_matches_a_str_on_its_utf8_bytes(mb: Board) -> None:
    mb.start("print('caf\\xe9 1')\nprint('caf\\xe9 2')\nprint('caf\\xe9 3')")
    assert mb.expect("café (\\d)", timeout=WAIT).group(1) == b"1"
    assert mb.expect(rb"caf\xc3\xa9 (\d)", timeout=WAIT).group(1) == b"2"
    assert mb.expect(re.compile("café (\\d)"), timeout=WAIT).group(1) == b"3"
    mb.stop()


def test_expect_with_no_time_left_still_looks_at_what_arrived(mb: Board) -> None:
    """timeout=0 is a look, not a wait: output that reached the host already counts (it was
    never read, so polling with timeout=0 could never match)."""
    mb.start("import time\ntime.sleep(0.3)\nprint('ready')\ntime.sleep(60)")  # printed after start returns
    deadline = time.monotonic() + WAIT
    while True:
        try:
            mb.expect_exact("ready", timeout=0)
            break
        except BoardTimeout:
            assert time.monotonic() < deadline, "expect(timeout=0) never saw what the board printed"
            time.sleep(0.05)
    mb.stop()


def test_stop_raises_the_background_programs_own_exception(mb: Board) -> None:
    mb.start("print('before')\nraise ValueError('from the background')")
    mb.expect_exact("before", timeout=WAIT)
    mb.expect_exact("ValueError", timeout=WAIT)  # it has ended by itself: stop sends no Ctrl-C
    with pytest.raises(DeviceError, match="from the background"):
        mb.stop(timeout=WAIT)
    assert mb.eval("1 + 1") == 2


def test_write_reaches_a_program_reading_input(mb: Board) -> None:
    mb.start("s = input()\nprint('got', s)")
    mb.write("hello board\r")
    assert mb.expect(r"got (.*)\r\n", timeout=WAIT).group(1) == b"hello board"  # a whole line
    mb.stop()


def test_main_py_output_after_hard_reset(mb: Board, emulator: MicrobitEmulator) -> None:
    mb.reset_method = emulator.hard_reset  # the farm sets this from farm.yaml; see test_multiboard
    mb.put(b"print('main.py ran at boot')\n", "main.py")
    mb.hard_reset()
    assert mb.expect_exact("main.py ran at boot", timeout=WAIT)
    assert mb.expect(r"MicroPython v1\.9\.2", timeout=WAIT)  # the banner of the friendly REPL after it
    assert mb.exec("print('raw again')") == "raw again\n"  # the next call re-entered the raw REPL
    mb.remove("main.py")


def test_reboot_leaves_the_boot_output_for_expect(mb: Board) -> None:
    mb.exec("x = 1")
    mb.reboot()
    assert mb.expect(r'Type "help\(\)" for more information', timeout=WAIT)
    assert mb.eval("'x' in globals()") is False  # RAM was cleared by the reset


# -- the console buffer, on the host ------------------------------------------------


def test_console_consumes_up_to_each_match() -> None:
    console = Console()
    console.append(b"a1 a2 a3")
    pattern = re.compile(rb"a(\d)")
    assert [console.search(pattern).group(1) for _ in range(3)] == [b"1", b"2", b"3"]  # type: ignore[union-attr]
    assert console.search(pattern) is None


def test_console_cut_keeps_positions_of_what_follows() -> None:
    console = Console()
    console.append(b"out\x04err\x04>more")
    found = console.find_from(0, re.compile(rb"\x04(.*?)\x04>"))
    assert found is not None
    base, match = found
    assert console.cut(base + match.start(), base + match.end()) == b"\x04err\x04>"
    assert console.pending() == b"outmore"


def test_console_keeps_a_bounded_tail() -> None:
    console = Console(limit=10)
    for _ in range(10):
        console.append(b"0123456789")
    assert len(console.pending()) <= 20
    assert console.pending().endswith(b"0123456789")


def test_stop_ends_a_program_blocked_reading_input(mb: Board) -> None:
    mb.start("while True:\n    s = input()\n    print('echo', s)")
    mb.write("one\r")
    mb.expect_exact("echo one", timeout=WAIT)
    mb.stop(timeout=WAIT)  # Ctrl-C alone waits for a byte there: stop nudges the line
    assert mb.exec("print('free')") == "free\n"


def test_the_next_exec_raises_the_background_programs_exception(mb: Board) -> None:
    mb.start("raise OSError('background failure')")
    mb.expect_exact("OSError", timeout=WAIT)
    with pytest.raises(DeviceError, match="background failure"):
        mb.exec("pass")
    assert mb.eval("2 + 2") == 4


def test_output_shows_what_no_expect_has_consumed(mb: Board) -> None:
    mb.start("print('kept for later')")
    assert mb.stop(timeout=WAIT) == "kept for later\n"  # stop waits for the program's end
    assert b"kept for later" in mb.output
    mb.expect_exact("kept for later", timeout=WAIT)
    assert b"kept for later" not in mb.output


def test_soft_reset_ends_a_background_program_without_raising_its_error(mb: Board) -> None:
    # what the farm does before the next test when a test left a failing program running
    mb.start("raise OSError('left behind')")
    mb.expect_exact("left behind", timeout=WAIT)
    assert "soft reboot" in mb.soft_reset()
    assert mb.eval("3 * 3") == 9
