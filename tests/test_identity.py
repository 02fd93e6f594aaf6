"""A test's board is its parameter, never a guess from the test id's text.

Board names that other parameters can mimic (``a`` and ``a-1`` with a test
parametrized over ``"1"``), names pytest escapes in ids (``café``) and ids
with an ``@`` in them: every test runs on its board, on the worker that holds
that board, and is reported under its whole id.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_boardfarm.emulator import MicrobitEmulator, start_many
from pytest_boardfarm.identity import WorkerBoards

from .test_plugin import run

BOARDS = ("a", "a-1", "café")

SUITE = """\
import os, pytest

def record(board, expected):
    with open(os.environ["RECORD"], "a", encoding="utf-8") as f:
        f.write(f"{board.name}\\t{os.environ.get('PYTEST_XDIST_WORKER', 'main')}\\n")
    assert board.name == expected

@pytest.mark.parametrize("p", ["1"])
def test_param(board, p, request):
    record(board, request.node.callspec.params["board"])

def test_plain(board, request):
    record(board, request.node.callspec.params["board"])

@pytest.mark.parametrize("user", ["user@example.com"])
def test_login(board, user, request):
    board.exec("print('login ' + " + repr(user) + ")")
    record(board, request.node.callspec.params["board"])
"""

ID = {"a": "a", "a-1": "a-1", "café": "caf\\xe9"}  # as pytest shows the board in a test id


@pytest.fixture(scope="module")
def boards() -> Iterator[list[MicrobitEmulator]]:
    """Three emulated boards behind ports: each run must lock them (unlike `emulator:`)."""
    started = start_many(len(BOARDS))
    yield started
    for board in started:
        board.stop()


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["sequential", "xdist"])
def test_every_test_runs_on_its_board_and_is_reported_whole(
    pytester: pytest.Pytester,
    boards: list[MicrobitEmulator],
    tmp_path: Path,
    workers: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = [f"locks: {{dir: {tmp_path / 'locks'}}}", "boards:"]
    lines += [f"  - {{name: '{name}', port: '{b.url}'}}" for name, b in zip(BOARDS, boards, strict=True)]
    (pytester.path / "farm.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    pytester.makepyfile(test_ids=SUITE)
    record = tmp_path / "record.txt"
    monkeypatch.setenv("RECORD", str(record))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    run_tmp = tmp_path / "run-tmp"  # where the controller keeps the workers' maps
    run_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(run_tmp))
    result = run(
        pytester, "--farm", "farm.yaml", "--farm-lock-timeout", "5", "--farm-junit", "junit.xml", "--farm-log-dir",
        "logs", *workers,
    )  # fmt: skip
    # before: a test sent to the worker that does not hold its board waited out the lock timeout
    result.assert_outcomes(passed=9)
    assert not list(run_tmp.glob("boardfarm-boards-*"))  # removed at the end
    used = [line.split("\t") for line in record.read_text(encoding="utf-8").splitlines()]
    assert sorted(name for name, _ in used) == sorted(BOARDS * 3)
    workers_of = {name: {worker for n, worker in used if n == name} for name in BOARDS}
    assert all(len(w) == 1 for w in workers_of.values()), workers_of  # one process per board

    root = ET.parse(pytester.path / "junit.xml").getroot()
    suites = {s.get("name"): {c.get("name") for c in s.findall("testcase")} for s in root}
    assert suites == {
        name: {f"test_param[{ID[name]}-1]", f"test_plain[{ID[name]}]", f"test_login[{ID[name]}-user@example.com]"}
        for name in BOARDS
    }
    login = pytester.path / "logs" / "a" / "test_ids__test_login[a-user_example.com].log"
    assert login.read_text().startswith("# test_ids.py::test_login[a-user@example.com] on a\n")
    assert "login user@example.com" in login.read_text()
    table = result.stdout.str().split("boardfarm: results per board")[1].splitlines()
    assert {tuple(line.split()[:4]) for line in table[2:5]} == {(n, "3", "0", "0") for n in BOARDS}

    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "| `test_ids::test_param[1]` | ✅ | ✅ | ✅ |" in summary  # one row per test, a column per board
    assert "| `test_ids::test_plain` | ✅ | ✅ | ✅ |" in summary
    assert "| `test_ids::test_login[user@example.com]` | ✅ | ✅ | ✅ |" in summary


def test_a_killed_runs_worker_directory_is_removed_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGKILL gives the xdist controller no chance to remove its directory.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = tmp_path / f"boardfarm-boards-{dead.pid}-k1ll3d"
    left.mkdir()
    (left / "gw0.json").write_text("{}")
    running = tmp_path / f"boardfarm-boards-{os.getppid()}-l1v3"  # a run still going
    running.mkdir()
    unrelated = tmp_path / "boardfarm-boards-notapid"
    unrelated.mkdir()
    boards = WorkerBoards()
    node = SimpleNamespace(workerinput={})
    boards.configure_node(node)
    assert not left.exists()
    assert running.is_dir() and unrelated.is_dir()
    ours = Path(node.workerinput["boardfarm_boards_dir"])
    assert ours.is_dir() and ours.name.startswith(f"boardfarm-boards-{os.getpid()}-")
    boards.close()
    assert not ours.exists()
