"""Two runs that need the same two boards in opposite orders take turns.

Each run holds a board from its first test to its last, and runs one board's
tests together; so a run never holds one board while it waits for another, and
neither waits for the lock timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_boardfarm.emulator import MicrobitEmulator, start_many
from pytest_boardfarm.locks import BoardLock
from pytest_boardfarm.ordering import order_by_board

LOCK_TIMEOUT = 40

SUITE = """\
import os, time, pytest

FIRST, SECOND = os.environ["ORDER"].split(",")
BARRIER = os.environ["BARRIER"]

@pytest.mark.board(name=FIRST)
def test_first(board):
    # both runs hold their first board here; wait (bounded) until the other run does too
    open(os.path.join(BARRIER, os.environ["RUN"]), "w").close()
    deadline = time.monotonic() + 30
    while len(os.listdir(BARRIER)) < 2:
        assert time.monotonic() < deadline, "the other run never started its first test"
        time.sleep(0.05)
    board.exec("x = 1")

@pytest.mark.board(name=SECOND)
def test_second(board):
    board.exec("x = 2")

def test_between():  # a test without a board keeps its place
    pass
"""


@pytest.fixture
def two_boards() -> Iterator[list[MicrobitEmulator]]:
    started = start_many(2)
    yield started
    for board in started:
        board.stop()


@pytest.mark.parametrize("workers", [[], ["-n", "1"]], ids=["sequential", "xdist"])
def test_runs_needing_two_boards_in_opposite_orders_both_finish(
    pytester: pytest.Pytester, two_boards: list[MicrobitEmulator], tmp_path: Path, workers: list[str]
) -> None:
    lines = [f"locks: {{dir: {tmp_path / 'locks'}}}", "boards:"]
    lines += [f"  - {{name: {name}, port: '{b.url}'}}" for name, b in zip("AB", two_boards, strict=True)]
    (pytester.path / "farm.yaml").write_text("\n".join(lines) + "\n")
    pytester.makepyfile(test_orders=SUITE)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = []
    start = time.monotonic()
    for run_name, order in (("one", "A,B"), ("two", "B,A")):
        env = dict(os.environ, ORDER=order, RUN=run_name, BARRIER=str(barrier))
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "--farm", "farm.yaml"]
        cmd += ["--farm-lock-timeout", str(LOCK_TIMEOUT), *workers]
        procs.append(subprocess.Popen(cmd, cwd=pytester.path, env=env, stdout=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=LOCK_TIMEOUT + 60)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    took = time.monotonic() - start
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all("3 passed" in out for out in outputs), outputs
    assert took < LOCK_TIMEOUT, f"a run waited out the lock timeout ({took:.0f}s)"  # a bound, not a speed claim


def _item(nodeid: str, board: str | None) -> Any:
    """A collected test as ordering sees it (identify() reads the board parameter)."""
    name = nodeid.split("::")[-1]
    callspec = None
    if board is not None:
        callspec = SimpleNamespace(params={"board": board}, indices={"board": 0}, _idlist=[board])
    return SimpleNamespace(nodeid=nodeid, name=name, originalname=name.split("[")[0], callspec=callspec)


def test_order_groups_boards_free_ones_first_and_keeps_boardless_tests_in_place() -> None:
    items = [
        _item("t.py::host_1", None),
        _item("t.py::x[A]", "A"),
        _item("t.py::x[B]", "B"),
        _item("t.py::host_2", None),
        _item("t.py::y[A]", "A"),
        _item("t.py::y[B]", "B"),
        _item("t.py::x[C]", "C"),
    ]
    ordered = order_by_board(items, is_free=lambda board: board != "A")  # another run holds A
    assert [i.nodeid for i in ordered] == [
        "t.py::host_1",
        "t.py::x[B]",
        "t.py::y[B]",
        "t.py::host_2",
        "t.py::x[C]",
        "t.py::x[A]",
        "t.py::y[A]",
    ]


BUSY_SUITE = """\
import os, pytest

@pytest.mark.parametrize("i", range(2))
def test_use(board, i):
    with open(os.environ["RECORD"], "a") as f:
        f.write(board.name + "\\n")
"""


@pytest.mark.parametrize("workers", [[], ["-n", "1"]], ids=["sequential", "xdist"])
def test_a_run_starts_with_the_board_no_one_else_holds(
    pytester: pytest.Pytester, two_boards: list[MicrobitEmulator], tmp_path: Path, workers: list[str]
) -> None:
    lines = [f"locks: {{dir: {tmp_path / 'locks'}}}", "boards:"]
    lines += [f"  - {{name: {name}, port: '{b.url}'}}" for name, b in zip("AB", two_boards, strict=True)]
    (pytester.path / "farm.yaml").write_text("\n".join(lines) + "\n")
    pytester.makepyfile(test_busy=BUSY_SUITE)
    record = tmp_path / "record.txt"
    other_run = BoardLock(tmp_path / "locks", two_boards[0].url, run="another run")
    other_run.acquire(1)  # A is busy when the run starts; free once the run used B (or after 30 s)
    done = threading.Event()

    def release_when_b_is_used() -> None:
        deadline = time.monotonic() + 30
        while not done.is_set() and time.monotonic() < deadline:
            if record.exists() and "B" in record.read_text().split():
                break
            time.sleep(0.05)
        other_run.release()

    releaser = threading.Thread(target=release_when_b_is_used)
    releaser.start()
    try:
        env = dict(os.environ, RECORD=str(record))
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--farm", "farm.yaml", *workers]
        proc = subprocess.run(cmd, cwd=pytester.path, env=env, capture_output=True, text=True, timeout=120)
    finally:
        done.set()
        releaser.join()
    assert proc.returncode == 0, proc.stdout
    assert record.read_text().split() == ["B", "B", "A", "A"]  # B while A was busy: no waiting first
