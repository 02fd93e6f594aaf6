"""What both emulated boards with current MicroPython share: the WebAssembly port (1.27)
and the unix port (1.28). Each type's own behaviour is in its own test module."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_boardfarm import Board, connect
from pytest_boardfarm.emulators import EmulatedBoard, UnixPortBoard, WebAssemblyBoard
from pytest_boardfarm.errors import BoardRebooted

from .emulated import NEEDS_UNIX_PORT, NEEDS_WEBASSEMBLY, connected, started
from .procs import assert_no_emulators, marked

TYPES = [
    pytest.param(WebAssemblyBoard, id="webassembly", marks=NEEDS_WEBASSEMBLY),
    pytest.param(UnixPortBoard, id="unix", marks=NEEDS_UNIX_PORT),
]


@pytest.fixture(scope="module", params=TYPES)
def emulated(request: pytest.FixtureRequest) -> Iterator[EmulatedBoard]:
    with started(request.param) as emu:
        yield emu


@pytest.fixture
def board(emulated: EmulatedBoard) -> Iterator[Board]:
    with connected(emulated, emulated.name) as b:
        yield b


def test_files_take_the_modern_path(board: Board, tmp_path: Path) -> None:
    features = board.files.features
    assert features.stat and features.directories and features.hashlib
    data = bytes(range(256)) * 20
    board.mkdir("/data")
    board.put(data, "/data/blob.bin")  # verified by size and sha256 on the board
    assert board.get("/data/blob.bin") == data
    assert [e.name for e in board.ls("/data")] == ["blob.bin"]
    tree = tmp_path / "app"
    (tree / "lib" / "deep").mkdir(parents=True)
    (tree / "main.py").write_text("print('main')\n")
    (tree / "lib" / "util.py").write_text("VALUE = 7\n")
    (tree / "lib" / "deep" / "more.py").write_text("MORE = 8\n")
    first = board.deploy(tree, "/app")
    assert sorted(first.copied) == ["lib/deep/more.py", "lib/util.py", "main.py"]
    assert board.deploy(tree, "/app").skipped == sorted(first.copied)  # identical: nothing sent again
    assert board.exec("import sys\nsys.path.append('/app/lib')\nimport util\nprint(util.VALUE)") == "7\n"


def test_soft_reset_clears_ram_and_keeps_files(board: Board) -> None:
    board.put(b"kept", "/kept.txt")
    board.exec("_bf_ram = 1")
    assert "soft reboot" in board.soft_reset(timeout=10)  # the bridge reboots it: both ports leave that to their host
    assert board.eval("'_bf_ram' in globals()") is False
    assert board.get("/kept.txt") == b"kept"
    board.remove("/kept.txt")


def test_system_exit_reboots_as_current_firmware_does(board: Board) -> None:
    with pytest.raises(BoardRebooted):
        board.exec("import sys\nsys.exit()")
    assert board.eval("1 + 1") == 2


@pytest.mark.parametrize("size", ["short", "long"])  # long: raw-paste on the unix port
def test_a_source_holding_the_raw_repls_control_bytes_runs_as_written(board: Board, size: str) -> None:
    padding = "pad = 0\n" * (40 if size == "long" else 0)  # short: one plain raw window
    assert board.exec(padding + "print([ord(c) for c in '\x01\x02\x03\x04'])") == "[1, 2, 3, 4]\n"
    assert board.eval("1 + 1") == 2


@pytest.mark.parametrize("board_type", TYPES)
def test_cli_emulates_boards_of_the_type(board_type: type[EmulatedBoard]) -> None:
    with marked() as mark:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest_boardfarm.cli", "emulate", "--type", board_type.name, "--count", "2"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            urls = [proc.stdout.readline().strip() for _ in range(2)]
            assert len(set(urls)) == 2
            for url in urls:
                with connect(url, timeout=10) as board:
                    assert board.eval("__import__('sys').implementation.version[:2]") >= (1, 27)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=15) == 0
        finally:
            proc.kill()
            proc.wait()
        assert_no_emulators(mark)
