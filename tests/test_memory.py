"""The board's memory is the user's: file operations leave a small board's heap as they found it.

Against the real micro:bit firmware (MicroPython 1.9.2, ~9 KB of heap) under QEMU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pytest_boardfarm import Board, BoardRebooted, BoardTimeout, DeviceError
from pytest_boardfarm.files import RemoteFiles

SMALL = 400  # bytes: "within a few hundred bytes of before"


def mem_free(board: Board) -> int:
    return int(board.eval("__import__('gc').collect() or __import__('gc').mem_free()"))


def binary(size: int, seed: int) -> bytes:
    """Data no earlier put sent: a board that keeps what it parsed shows it at once."""
    return bytes((i * 131 + seed * 7 + (i >> 8) * seed) % 256 for i in range(size))


@pytest.fixture
def fresh(mb: Board) -> Board:
    mb.soft_reset()  # nothing of the fixture's own ls/remove either
    return mb


def test_each_file_operation_gives_back_the_memory_it_used(fresh: Board, tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    for i in range(3):
        (tmp_path / "app" / f"m{i}.py").write_text(f"x = {i}\n" * 20)
    operations: list[tuple[str, Callable[[], object]]] = [
        ("exists", lambda: fresh.exists("a.bin")),
        ("put", lambda: fresh.put(binary(2048, 1), "a.bin")),
        ("get", lambda: fresh.get("a.bin")),
        ("ls", lambda: fresh.ls()),
        ("put again", lambda: fresh.put(binary(2048, 2), "a.bin")),
        ("remove", lambda: fresh.remove("a.bin")),
        ("deploy", lambda: fresh.deploy(tmp_path / "app")),
        ("deploy unchanged", lambda: fresh.deploy(tmp_path / "app")),
    ]
    start = mem_free(fresh)
    for what, operation in operations:
        before = mem_free(fresh)
        operation()
        after = mem_free(fresh)
        assert before - after < SMALL, f"{what} kept {before - after} bytes of the board's heap"
    assert start - mem_free(fresh) < SMALL  # and all of them together
    assert fresh.eval("list(globals())") == ["__name__"]


def test_a_long_exec_leaves_nothing_behind(fresh: Board) -> None:
    before = mem_free(fresh)
    source = "x = 0\n" + "x += 1\n" * 120  # 1 KB: staged on the board in window-sized pieces
    fresh.exec(source + "del x")
    assert fresh.eval("'_bf_s' in globals()") is False
    assert before - mem_free(fresh) < SMALL
    with pytest.raises(DeviceError, match="ZeroDivisionError"):
        fresh.exec(source + "1/0")  # a staged program that fails is freed too
    assert fresh.eval("'_bf_s' in globals()") is False


def test_many_puts_in_a_row_after_a_soft_reset(fresh: Board) -> None:
    # The bench (bench/bench_memory.py) does 100 + 100; the suite does fewer, same shape.
    start = mem_free(fresh)
    for round_ in range(12):
        data = binary(2048, round_)
        fresh.put(data, "two.bin")
    fresh.remove("two.bin")  # 12 KB and 2 KB do not both fit the ~15 KB file system
    for round_ in range(3):
        fresh.put(binary(12 * 1024, 100 + round_), "twelve.bin")
    assert fresh.get("twelve.bin") == binary(12 * 1024, 102)
    assert start - mem_free(fresh) < SMALL
    assert fresh.exec("x=1") == ""  # the board can still parse (mpremote could not, before)


def test_too_big_a_file_leaves_no_partial_file_and_a_usable_board(fresh: Board, tmp_path: Path) -> None:
    before = mem_free(fresh)
    for _ in range(2):  # the second time proves the first left the board fit
        with pytest.raises(DeviceError, match="no space left"):
            fresh.put(binary(20 * 1024, 5), "huge.bin")
        assert fresh.ls() == []
    assert before - mem_free(fresh) < SMALL
    fresh.put(binary(4096, 6), "fits.bin")
    assert fresh.get("fits.bin") == binary(4096, 6)
    fresh.remove("fits.bin")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "a_main.py").write_text("print('hi')\n")
    (tmp_path / "app" / "b_huge.bin").write_bytes(binary(20 * 1024, 7))
    with pytest.raises(DeviceError, match="no space left"):
        fresh.deploy(tmp_path / "app")  # a deploy too big for the board...
    assert [e.name for e in fresh.ls()] == ["a_main.py"]  # ...leaves what fitted, no partial file
    assert before - mem_free(fresh) < SMALL
    (tmp_path / "app" / "b_huge.bin").unlink()
    assert fresh.deploy(tmp_path / "app").skipped == ["a_main.py"]  # and the board is fine for the next run


@contextlib.contextmanager
def faulty(board: Board, after: int, fault: Callable[[str], str]) -> Iterator[None]:
    """Replace the ``after``-th device call of the next file operation with ``fault(code)``."""
    files: RemoteFiles = board.files
    run = files._run
    calls = 0

    def patched(code: str) -> str:
        nonlocal calls
        calls += 1
        return run(fault(code) if calls == after else code)

    files._run = patched  # type: ignore[method-assign]
    try:
        yield
    finally:
        files._run = run  # type: ignore[method-assign]


def host_interrupt(board: Board) -> Callable[[str], str]:
    """Send half of the code, then raise KeyboardInterrupt here: the board is mid-source."""

    def fault(code: str) -> str:
        board._transport.write(code.encode()[: len(code) // 2])
        raise KeyboardInterrupt

    return fault


FAULTS = {
    "device error": (DeviceError, lambda board: lambda code: "raise OSError(5)"),
    "memory error": (DeviceError, lambda board: lambda code: "b=bytearray(20000)"),
    "timeout": (BoardTimeout, lambda board: lambda code: "while 1:\n pass"),
    "reboot": (BoardRebooted, lambda board: lambda code: "import microbit\nmicrobit.reset()"),
    "interrupt here": (KeyboardInterrupt, host_interrupt),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_put_that_fails_midway_removes_its_partial_file(fresh: Board, fault: str) -> None:
    fresh.put(b"old", "keep.txt")
    fresh.exists("x")  # settles the firmware features: the fault lands among the writes
    before = mem_free(fresh)
    error, make = FAULTS[fault]
    timeout, fresh.timeout = fresh.timeout, 1.0
    try:
        with pytest.raises(error), faulty(fresh, 40, make(fresh)):
            fresh.put(binary(2048, 9), "partial.bin")
    finally:
        fresh.timeout = timeout
    assert [e.name for e in fresh.ls()] == ["keep.txt"]
    assert fresh.exec("print('usable')") == "usable\n"
    assert before - mem_free(fresh) < SMALL
    fresh.put(binary(2048, 10), "partial.bin")  # and the next put works


def test_ls_of_fifty_files_streams(mb: Board, tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    for i in range(50):
        (app / f"file_{i:02}.py").write_text(f"VALUE = {i}\n")
    mb.soft_reset()
    assert len(mb.deploy(app).copied) == 50  # a first deploy of 50 files, from a fresh reset
    for _ in range(10):
        mb.soft_reset()
        entries = mb.ls()
        assert [e.name for e in entries] == sorted(p.name for p in app.iterdir())
        assert all(e.size == len(f"VALUE = {i}\n") for i, e in enumerate(entries))
    for entry in mb.ls():
        mb.remove(entry.name)


def test_every_file_operation_stays_within_the_uart_window(fresh: Board, tmp_path: Path) -> None:
    # A real micro:bit's UART ring holds 63 bytes: no source may outgrow the write window.
    sent: list[bytes] = []
    write = fresh._transport.write
    fresh._transport.write = lambda data: (sent.append(data), write(data))[1]  # type: ignore[method-assign]
    try:
        fresh.put(bytes(range(256)) * 4, "w.bin")
        fresh.put("naïve ✓ 'name'".encode() * 3, "it's ✓.txt")
        assert fresh.get("w.bin") == bytes(range(256)) * 4
        fresh.ls()
        fresh.remove("w.bin")
    finally:
        fresh._transport.write = write  # type: ignore[method-assign]
    sources = b"".join(sent).split(b"\x04")
    assert max(len(s) for s in sources) + 1 <= fresh._repl.pacing.window
