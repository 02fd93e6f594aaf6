"""Unit tests of the raw REPL protocol against a scripted device (see fakes.py).

The emulator tests prove the protocol on real firmware; these reach what the
micro:bit's 1.9.2 cannot show: raw-paste mode and its flow control.
"""

from __future__ import annotations

import pytest

from pytest_boardfarm.deadline import Deadline
from pytest_boardfarm.errors import BoardRebooted, BoardTimeout, exception_name
from pytest_boardfarm.rawrepl import Pacing, RawRepl

from .fakes import FakeDevice


def repl_for(device: FakeDevice, **kwargs: object) -> RawRepl:
    repl = RawRepl(device, **kwargs)  # type: ignore[arg-type]
    repl.enter(Deadline(2))
    return repl


def test_enter_from_friendly_repl() -> None:
    device = FakeDevice()
    repl_for(device)
    assert b"\x01" in device.written


@pytest.mark.parametrize("window", [8, 32, 256])
def test_raw_paste_respects_the_window(window: int) -> None:
    device = FakeDevice(paste="yes", window=window)
    repl = repl_for(device)
    source = ("x = 0\n" + "x += 1\n" * 100 + "print(x)").encode()
    result = repl.exec(source, Deadline(2))
    assert result.stdout == b"100\r\n" and result.stderr == b""
    assert repl.raw_paste is True
    assert device.max_unacked <= 0  # never sent beyond what the board granted


def test_raw_paste_refused_falls_back_to_plain() -> None:
    device = FakeDevice(paste="refuse")
    repl = repl_for(device, pacing=Pacing(window=1 << 20))
    assert repl.exec(b"print('plain')", Deadline(2)).stdout == b"plain\r\n"
    assert repl.raw_paste is False
    before = device.written.count(b"\x05A\x01")
    repl.exec(b"print(2)", Deadline(2))
    assert device.written.count(b"\x05A\x01") == before  # asked once per connection


def test_unanswered_raw_paste_request_falls_back_and_resynchronises() -> None:
    device = FakeDevice(paste="silent")
    repl = repl_for(device, pacing=Pacing(window=1 << 20))
    assert repl.raw_paste is False
    assert repl.exec(b"print(6*7)", Deadline(2)).stdout == b"42\r\n"  # the request's bytes were cleared
    before = device.written.count(b"\x05A\x01")
    repl.exec(b"print(2)", Deadline(2))
    assert device.written.count(b"\x05A\x01") == before  # asked once per connection


def test_old_firmware_answers_with_the_banner() -> None:
    device = FakeDevice(paste="old")
    repl = repl_for(device)
    assert repl.exec(b"print(1+1)", Deadline(2)).stdout == b"2\r\n"
    assert repl.raw_paste is False


def test_long_plain_source_is_staged_within_the_window() -> None:
    device = FakeDevice(paste="old")
    repl = repl_for(device, pacing=Pacing(window=48))
    repl.exec(b"pass", Deadline(2))
    start = len(device.written)
    result = repl.exec(("print(len('" + "y" * 500 + "'))").encode(), Deadline(2))
    assert result.stdout == b"500\r\n"
    writes = device.written[start:].split(b"\x04")
    assert all(len(w) <= 47 for w in writes)


def test_device_exception_text_is_returned() -> None:
    repl = repl_for(FakeDevice())
    result = repl.exec(b"1/0", Deadline(2))
    assert b"ZeroDivisionError" in result.stderr


def test_soft_reset() -> None:
    device = FakeDevice()
    repl = repl_for(device)
    repl.exec(b"a = 1", Deadline(2))
    assert b"soft reboot" in repl.soft_reset(Deadline(2))
    assert b"NameError" in repl.exec(b"a", Deadline(2)).stderr


class SilentDevice:
    def write(self, data: bytes) -> None:
        pass

    def read(self, timeout: float) -> bytes:
        return b""


def test_soft_reset_without_a_reboot_fails_clearly_and_leaves_the_repl_usable() -> None:
    device = FakeDevice(soft_reboots=False)
    repl = repl_for(device)
    repl.exec(b"kept = 1", Deadline(2))
    with pytest.raises(BoardTimeout, match="no soft reboot: RAM was not cleared"):
        repl.soft_reset(Deadline(0.2))
    assert repl.exec(b"print(kept)", Deadline(2)).stdout == b"1\r\n"  # not the reset's stale "OK"


def test_silent_device_times_out_within_the_deadline() -> None:
    repl = RawRepl(SilentDevice())
    deadline = Deadline(0.5)
    with pytest.raises(BoardTimeout, match="could not enter the raw REPL"):
        repl.enter(deadline)
    assert deadline.expired()


def test_exception_name() -> None:
    tb = 'Traceback (most recent call last):\n  File "<stdin>", line 1\nMemoryError: memory allocation failed\n'
    assert exception_name(tb) == "MemoryError"
    assert exception_name("") == "Exception"
    assert exception_name("Traceback...\nOSError: [Errno 2] ENOENT\n") == "OSError"


def test_board_retries_once_when_the_parser_runs_out_of_memory() -> None:
    from pytest_boardfarm.board import Board

    device = FakeDevice()
    board = Board(device, name="fake", timeout=2)  # type: ignore[arg-type]
    board.enter_raw_repl()
    device.parse_failures = 1
    assert board.exec("print('parsed')") == "parsed\n"
    assert b"gc.collect()" in device.written


def test_board_reports_a_parser_failure_that_persists() -> None:
    from pytest_boardfarm import DeviceError
    from pytest_boardfarm.board import Board

    device = FakeDevice()
    board = Board(device, name="fake", timeout=2)  # type: ignore[arg-type]
    board.enter_raw_repl()
    device.parse_failures = 2
    with pytest.raises(DeviceError, match="parser could not allocate"):
        board.exec("print('x')")


@pytest.mark.parametrize("paste", ["yes", "old"])
def test_soft_reboot_at_system_exit_is_seen(paste: str) -> None:
    # Current firmware (not the emulated 1.9.2, which just returns) soft-reboots when a
    # program run from the raw REPL ends with SystemExit; RAM is gone afterwards.
    device = FakeDevice(paste=paste, exit_reboots=True)
    repl = repl_for(device)
    repl.exec(b"kept = 1", Deadline(2))
    with pytest.raises(BoardRebooted, match="soft reboot") as caught:
        repl.exec(b"import sys\nprint('bye')\nsys.exit()", Deadline(2))
    assert caught.value.at_prompt
    assert repl.exec(b"print('again')", Deadline(2)).stdout == b"again\r\n"  # at the raw prompt, in step
    assert b"NameError" in repl.exec(b"kept", Deadline(2)).stderr


def test_system_exit_without_a_reboot_returns_normally() -> None:
    device = FakeDevice(paste="old", exit_reboots=False)  # as the micro:bit's 1.9.2 answers
    repl = repl_for(device)
    assert repl.exec(b"import sys\nprint('bye')\nsys.exit()", Deadline(2)).stdout == b"bye\r\n"


def test_short_sources_go_plain_on_a_raw_paste_board() -> None:
    """One exchange instead of two; a long source still gets raw-paste's flow control."""
    device = FakeDevice(paste="yes", window=16)
    repl = repl_for(device)
    assert repl.raw_paste is True
    asked = device.written.count(b"\x05A\x01")
    assert repl.exec(b"print(6*7)", Deadline(2)).stdout == b"42\r\n"
    assert device.written.count(b"\x05A\x01") == asked
    source = ("x = 0\n" + "x += 1\n" * 20 + "print(x)").encode()
    assert repl.exec(source, Deadline(2)).stdout == b"20\r\n"
    assert device.written.count(b"\x05A\x01") == asked + 1
    assert device.max_unacked <= 0


def test_a_large_write_window_does_not_turn_raw_paste_off() -> None:
    device = FakeDevice(paste="yes", window=16)
    repl = repl_for(device, pacing=Pacing(window=1 << 20))
    asked = device.written.count(b"\x05A\x01")
    source = ("x = 0\n" + "x += 1\n" * 60 + "print(x)").encode()
    assert repl.exec(source, Deadline(2)).stdout == b"60\r\n"
    assert device.written.count(b"\x05A\x01") == asked + 1
