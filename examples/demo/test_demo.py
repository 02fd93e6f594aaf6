"""A demo suite for the example farm: `bash scripts/demo` runs it on four emulated boards.

Each test runs once per matching board. One test fails on purpose, to show how
a failure is reported: the device's traceback and the board's serial log.
"""

from pathlib import Path

import pytest

APP = Path(__file__).parent / "app"


def test_exec_and_eval(board):
    assert board.exec("print('hello from', 'MicroPython')") == "hello from MicroPython\n"
    assert board.eval("[x * x for x in range(5)]") == [0, 1, 4, 9, 16]


def test_board_identity(board):
    info = board.info
    assert info.platform == "microbit"
    assert "MicroPython" in info.firmware
    assert info.mem_free > 1000


def test_deployed_app_runs_on_the_board(board):
    # farm.example.yaml deploys examples/demo/app before a board's first test.
    assert board.eval("__import__('blinky').VERSION") == "1.2.0"
    assert board.get("blinky.py") == (APP / "blinky.py").read_bytes()


def test_file_round_trip(board):
    data = bytes(range(256))
    board.put(data, "calibration.bin")
    assert board.get("calibration.bin") == data
    assert board.eval("__import__('blinky').checksum(open('calibration.bin', 'rb').read())") == checksum(data)
    board.remove("calibration.bin")


def test_soft_reset_clears_ram(board):
    board.exec("counter = 41")
    assert board.eval("counter + 1") == 42
    board.soft_reset()
    assert board.eval("'counter' in globals()") is False


@pytest.mark.board(tags=["display"])
def test_display_scrolls_text(board):
    board.exec("from microbit import display\ndisplay.scroll('hi', wait=False)")


@pytest.mark.board(platform="rp2040")
def test_pico_pin_toggle(board):
    board.exec("from machine import Pin\nPin(25, Pin.OUT).toggle()")


def test_reads_config_file(board):
    # Fails on purpose: there is no config.json on the board, and the report
    # shows the board's own traceback and its serial log for this test.
    board.exec("print('loading config...')\nconfig = open('config.json').read()")


def checksum(data):
    total = 0
    for byte in data:
        total = (total * 31 + byte) % 65521
    return total
