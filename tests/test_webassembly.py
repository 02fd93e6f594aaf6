"""The second emulated board type: MicroPython 1.27's WebAssembly port under Node.

It brings current firmware to the farm, so the modern paths (raw REPL on 1.27,
hashlib checksums, directories, os.stat/ilistdir) run on a real MicroPython.
Skipped only when Node or the npm package is missing; scripts/setup installs both.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_boardfarm import Board, connect
from pytest_boardfarm.emulators import EMULATORS, EmulatorError, WebAssemblyBoard
from pytest_boardfarm.errors import BoardTimeout

from .emulated import NEEDS_WEBASSEMBLY, connected, kill_its_owner, started
from .procs import assert_no_emulators, marked

pytestmark = NEEDS_WEBASSEMBLY


@pytest.fixture(scope="module")
def wasm() -> Iterator[WebAssemblyBoard]:
    with started(WebAssemblyBoard) as emu:
        yield emu


@pytest.fixture
def board(wasm: WebAssemblyBoard) -> Iterator[Board]:
    with connected(wasm, "wasm") as b:
        yield b


def test_registry_knows_both_types() -> None:
    assert EMULATORS["microbit"].name == "microbit"
    assert EMULATORS["webassembly"] is WebAssemblyBoard


def test_a_missing_image_is_a_clear_error(tmp_path: Path) -> None:
    board = WebAssemblyBoard(firmware=tmp_path / "micropython.mjs")
    with pytest.raises(EmulatorError, match=r"micropython\.mjs not found; run scripts/setup"):
        board.start()
    assert not board.running()


def test_exec_and_eval_on_current_micropython(board: Board) -> None:
    assert board.exec("print(6 * 7)") == "42\n"  # this port ends printed lines with \n alone
    assert board.eval("[1, 'two', b'3']") == [1, "two", b"3"]
    assert board.eval("__import__('sys').implementation.version[:2]") == (1, 27)
    assert "MicroPython v1.27" in board.info.firmware


def test_unanswered_raw_paste_request_falls_back_to_plain_raw_mode(board: Board) -> None:
    # The bridge drops the request (the port would wedge on it): no answer at all.
    assert board._repl.raw_paste is False
    long_source = "x = 0\n" + "x += 1\n" * 40 + "print(x)"  # longer than the window: staged in pieces
    assert board.exec(long_source) == "40\n"
    assert board.eval("x") == 40  # state kept: the fallback needed no restart


def test_busy_loop_ignores_ctrl_c_and_hard_reset_restarts(wasm: WebAssemblyBoard) -> None:
    with connect(wasm.url, timeout=10) as board:
        board.exec("_bf_kept = 1")
        with pytest.raises(BoardTimeout, match="Ctrl-C did not bring the board back"):
            board.exec("while True: pass", timeout=1)
        assert board.interrupt_failed
    old = wasm.pid
    wasm.hard_reset()
    assert wasm.pid != old and wasm.running()
    with connect(wasm.url, timeout=10) as board:
        assert board.eval("'_bf_kept' in globals()") is False  # RAM cleared, like a RESET button


def test_bridge_dies_with_its_parent() -> None:
    with marked() as mark:
        printed, alive = kill_its_owner(WebAssemblyBoard, mark)
        assert alive == {int(printed.split()[0])}
        assert_no_emulators(mark)


MIXED_FARM = """\
boards:
  - {name: old, emulator: microbit}
  - {name: new, emulator: webassembly}
"""

PORTABLE_SUITE = """\
def test_arithmetic(board):
    assert board.eval("2 ** 10") == 1024

def test_files(board):
    board.put(b"hello", "greeting.txt")
    assert board.get("greeting.txt") == b"hello"
    assert "greeting.txt" in [e.name for e in board.ls()]
    board.remove("greeting.txt")

def test_platform(board, record_property):
    record_property("platform", board.platform)
    assert board.platform in ("microbit", "webassembly")
"""


def test_one_suite_passes_on_a_microbit_and_a_webassembly_board(pytester: pytest.Pytester) -> None:
    (pytester.path / "farm.yaml").write_text(MIXED_FARM)
    pytester.makepyfile(test_suite=PORTABLE_SUITE)
    started = time.monotonic()
    with marked() as mark:
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-rA", "-v", "--farm", "farm.yaml", timeout=180
        )
        assert_no_emulators(mark)
    assert time.monotonic() - started < 180
    result.assert_outcomes(passed=6)
    text = result.stdout.str()
    assert "recovered" not in text  # the per-test reset works on both: no board needed the recovery ladder
    for board_name in ("old", "new"):
        for test in ("test_arithmetic", "test_files", "test_platform"):
            assert re.search(rf"{test}\S*{board_name}\S* PASSED", text), (test, board_name)


def test_a_deaf_webassembly_board_is_restarted_by_the_ladder(pytester: pytest.Pytester) -> None:
    (pytester.path / "app").mkdir()
    (pytester.path / "app" / "lib.py").write_text("VALUE = 7\n")
    (pytester.path / "farm.yaml").write_text(
        "boards:\n  - {name: wasm, emulator: webassembly, deploy: app, timeout: 2}\n"
    )
    pytester.makepyfile(
        test_suite="""
def test_stuck(board):
    board.exec("while True: pass")

def test_back(board):
    assert board.eval("__import__('lib').VALUE") == 7  # restarted, and the app deployed again
"""
    )
    with marked() as mark:
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-rA", "-v", "--farm", "farm.yaml", timeout=120
        )
        assert_no_emulators(mark)
    result.assert_outcomes(passed=1, failed=1)
    assert "hard reset: ok - restarted the emulator" in result.stdout.str()
