"""Tests with several boards: @pytest.mark.boards, the boards fixture, pairing, locking, reports.

Pairing and ordering are pure logic, tested on the host; the rest runs pytest
on farms of emulated micro:bits.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_boardfarm.emulator import MicrobitEmulator, start_many
from pytest_boardfarm.multiboard import combinations, parse_marker
from pytest_boardfarm.scheduling import board_groups

LOCK_TIMEOUT = 60
FARM = """\
locks: {{dir: {locks}}}
boards:
  - {{name: sim-1, emulator: microbit, tags: [radio]}}
  - {{name: sim-2, emulator: microbit, tags: [radio]}}
{more}"""
THIRD = "  - {name: sim-3, emulator: microbit}\n"

TALKING_SUITE = """
import os, pytest

@pytest.mark.boards(sender={"platform": "microbit"}, receiver={"tags": ["radio"]})
def test_token_through_the_host(boards):
    sender, receiver = boards["sender"], boards["receiver"]
    token = "tok" + os.urandom(3).hex()
    receiver.start("s = input()\\nprint('received', s)")
    sender.start("print('token', %r)" % token)
    sent = sender.expect(rb"token (\\w+)\\r\\n", timeout=20).group(1)
    receiver.write(sent + b"\\r")
    assert receiver.expect(rb"received (\\w+)\\r\\n", timeout=20).group(1) == token.encode()
    receiver.stop()
    print("PAIR", sender.name, receiver.name)
    record(os.environ.get("PYTEST_XDIST_WORKER", "-"))

def record(worker):
    with open(os.environ["RECORD"], "a") as f:
        f.write(os.environ["PYTEST_CURRENT_TEST"].split()[0] + " " + worker + "\\n")

def test_single(board):
    assert board.eval("6 * 7") == 42
    record(os.environ.get("PYTEST_XDIST_WORKER", "-"))

def test_main_py_at_boot(board):
    board.put(b"print('main.py says hello')\\n", "main.py")
    board.hard_reset()  # farm.yaml's reset method: for an emulated micro:bit, QEMU's system_reset
    board.expect_exact("main.py says hello", timeout=20)
    board.remove("main.py")
"""


def write_farm(path: Path, locks: Path, *, three: bool = False) -> Path:
    path.write_text(FARM.format(locks=locks, more=THIRD if three else ""))
    return path


@pytest.fixture(autouse=True)
def record_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the suites run here note each test and its xdist worker, in the order they ran."""
    path = tmp_path / "record.txt"
    monkeypatch.setenv("RECORD", str(path))
    return path


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "-v", "-s", *args, timeout=180)


# -- pairing, on the host ------------------------------------------------------------


def test_rotate_gives_the_fewest_combinations_where_every_board_plays_every_role() -> None:
    three = ["sim-1", "sim-2", "sim-3"]
    rotated = combinations([three, three], "rotate")
    assert len(rotated) == 3
    assert {(role, board) for combo in rotated for role, board in enumerate(combo)} == {
        (role, board) for role in (0, 1) for board in three
    }
    assert all(len(set(combo)) == 2 for combo in rotated)  # never one board in two roles


def test_all_gives_every_ordered_combination() -> None:
    three = ["sim-1", "sim-2", "sim-3"]
    assert len(combinations([three, three], "all")) == 6
    assert combinations([["a"], ["a"]], "all") == []  # one board cannot play two roles


def test_rotate_with_roles_matching_different_boards() -> None:
    # the sender must be a; the receiver any other: a plays only the sender
    assert combinations([["a"], ["a", "b", "c"]]) == [("a", "b"), ("a", "c")]


def test_marker_problems_are_named() -> None:
    _, problems = parse_marker((), {"sender": {"platfrom": "microbit"}, "pairing": "some"})
    assert any("unknown filter 'platfrom' (did you mean 'platform'?)" in p for p in problems)
    assert any("pairing='some'" in p for p in problems)
    _, problems = parse_marker((), {"sender": "microbit"})
    assert any("expected a dict of filters" in p for p in problems)


def test_boards_sharing_a_test_form_one_group() -> None:
    groups = board_groups([("a",), ("a", "b"), ("c",), ("b", "d")])
    assert groups["a"] == groups["d"] == ("a", "b", "d")
    assert groups["c"] == ("c",)


# -- collection ---------------------------------------------------------------------


def test_ids_name_the_boards_in_role_order_and_counts_follow_the_pairing(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    write_farm(pytester.path / "farm.yaml", tmp_path / "locks", three=True)
    pytester.makepyfile(
        test_pairs="""
import pytest

@pytest.mark.boards(a={}, b={})
def test_rotate(boards):
    pass

@pytest.mark.boards(a={}, b={}, pairing="all")
def test_all(boards):
    pass

@pytest.mark.boards(tx={"name": "sim-3"}, rx={"tags": ["radio"]})
def test_named(boards):
    pass

@pytest.mark.boards(tx={"platform": "esp32"}, rx={})
def test_none(boards):
    pass
"""
    )
    result = run(pytester, "--farm", "farm.yaml", "--collect-only", "-q")
    ids = [line.strip() for line in result.outlines if "<Function" in line]
    assert len([i for i in ids if "test_rotate[" in i]) == 3
    assert len([i for i in ids if "test_all[" in i]) == 6
    assert sorted(i.split("[")[1] for i in ids if "test_named[" in i) == ["sim-3+sim-1]>", "sim-3+sim-2]>"]
    skipped = run(pytester, "--farm", "farm.yaml", "-k", "none")
    skipped.assert_outcomes(skipped=1)
    text = skipped.stdout.str()
    assert "test_none[no-boards]" in text
    assert "no combination of distinct boards for roles tx (platform='esp32': none)" in text


def test_a_typo_in_the_marker_is_a_collection_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    write_farm(pytester.path / "farm.yaml", tmp_path / "locks")
    pytester.makepyfile(
        test_typo="import pytest\n@pytest.mark.boards(a={'tag': ['x']})\ndef test_x(boards):\n    pass\n"
    )
    result = run(pytester, "--farm", "farm.yaml")
    assert result.ret != 0
    assert "unknown filter 'tag' (did you mean 'tags'?)" in result.stdout.str()


def test_a_board_marker_narrows_every_role_of_a_multi_board_test(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """``@pytest.mark.board`` filters (here from a module's pytestmark) apply to a multi-board
    test as they do to a single-board one: every role picks among the boards it matches."""
    write_farm(pytester.path / "farm.yaml", tmp_path / "locks", three=True)
    pytester.makepyfile(
        test_narrowed="""
import pytest

pytestmark = pytest.mark.board(tags=["radio"], timeout=20)

@pytest.mark.boards(a={}, b={})
def test_radio_pair(boards):
    print("PAIR", boards["a"].name, boards["b"].name, boards["a"].timeout)

@pytest.mark.board(name="sim-3")
@pytest.mark.boards(a={}, b={})
def test_one_board_for_two_roles(boards):
    pass
"""
    )
    result = run(pytester, "--farm", "farm.yaml", "--collect-only", "-q")
    ids = sorted(line.strip() for line in result.outlines if "test_radio_pair[" in line)
    assert ids == ["<Function test_radio_pair[sim-1+sim-2]>", "<Function test_radio_pair[sim-2+sim-1]>"]
    result = run(pytester, "--farm", "farm.yaml")
    result.assert_outcomes(passed=2, skipped=1)
    text = result.stdout.str()
    assert sorted(re.findall(r"PAIR (\S+) (\S+) (\S+)", text)) == [
        ("sim-1", "sim-2", "20.0"),
        ("sim-2", "sim-1", "20.0"),
    ]
    assert "test_one_board_for_two_roles[no-boards]" in text
    assert (
        "no combination of distinct boards for roles a (any board: sim-3); b (any board: sim-3), "
        "among the boards @pytest.mark.board(name='sim-3') selects" in text
    )


# -- running, on emulated micro:bits --------------------------------------------------


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["sequential", "xdist"])
def test_two_boards_talk_and_reports_count_the_test_under_each_board(
    pytester: pytest.Pytester, tmp_path: Path, workers: list[str], record_file: Path
) -> None:
    write_farm(pytester.path / "farm.yaml", tmp_path / "locks")
    pytester.makepyfile(test_talk=TALKING_SUITE)
    junit = tmp_path / "junit.xml"
    result = run(pytester, "--farm", "farm.yaml", "--farm-junit", str(junit), *workers)
    result.assert_outcomes(passed=6)  # 2 pairs (rotate over 2 boards) + 2 x 2 single-board tests
    text = result.stdout.str()
    ran = [line.split() for line in record_file.read_text().splitlines()]
    assert [nodeid.split("[")[0] for nodeid, _ in ran] == ["test_talk.py::test_single"] * 2 + [
        "test_talk.py::test_token_through_the_host"
    ] * 2  # the multi-board tests after the single-board tests of their boards
    assert len({worker for _, worker in ran}) == 1  # under xdist: the boards' group on one worker
    if not workers:  # with xdist the workers' stdout is not shown
        assert sorted(re.findall(r"PAIR (\S+) (\S+)", text)) == [("sim-1", "sim-2"), ("sim-2", "sim-1")]
    assert "PASSED test_talk.py::test_token_through_the_host[sim-1+sim-2]" in text  # -rA's summary
    suites = {s.get("name"): s for s in ET.parse(junit).getroot().iter("testsuite")}
    for name in ("sim-1", "sim-2"):
        cases = {c.get("name"): c for c in suites[name].iter("testcase")}
        assert len(cases) == 4, cases.keys()  # 2 single-board tests + the 2 pairs it plays in
        pair = cases["test_token_through_the_host[sim-1+sim-2]"]
        log = pair.findtext("system-out") or ""
        assert ("received tok" in log) == (name == "sim-2"), log  # each board's own serial log
        assert ("token tok" in log) == (name == "sim-1"), log
        assert "main.py says hello" in (cases[f"test_main_py_at_boot[{name}]"].findtext("system-out") or "")
    for name in ("sim-1", "sim-2"):  # the table counts the pair tests under each board
        row = next(line for line in result.outlines if line.startswith(name) and "passed" not in line.lower())
        assert " 4 " in f" {row} ", row


@pytest.fixture
def shared_boards() -> Iterator[list[MicrobitEmulator]]:
    """Two emulated boards outside any pytest run: a farm that runs share (with locks)."""
    boards = start_many(2)
    yield boards
    for board in boards:
        board.stop()


CONCURRENT_SUITE = """
import os, pytest
FIRST, SECOND = os.environ["ORDER"].split(",")

@pytest.mark.boards(left={"name": FIRST}, right={"name": SECOND})
def test_pair(boards):
    for role, board in boards.items():
        board.exec("import microbit\\nmicrobit.sleep(200)")
        assert board.eval("1 + 1") == 2

@pytest.mark.parametrize("i", range(2))
def test_single(board, i):
    board.exec("x = %d" % i)
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["sequential", "xdist"])
def test_concurrent_runs_with_two_board_tests_do_not_deadlock(
    pytester: pytest.Pytester, shared_boards: list[MicrobitEmulator], tmp_path: Path, workers: list[str]
) -> None:
    lines = [f"locks: {{dir: {tmp_path / 'locks'}}}", "boards:"]
    lines += [f"  - {{name: {name}, port: '{b.url}'}}" for name, b in zip("AB", shared_boards, strict=True)]
    (pytester.path / "farm.yaml").write_text("\n".join(lines) + "\n")
    pytester.makepyfile(test_pairs=CONCURRENT_SUITE)
    procs = []
    for order in ("A,B", "B,A"):  # the two runs name the boards in opposite role orders
        env = dict(os.environ, ORDER=order)
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "--farm", "farm.yaml"]
        cmd += ["--farm-lock-timeout", str(LOCK_TIMEOUT), *workers]
        procs.append(subprocess.Popen(cmd, cwd=pytester.path, env=env, stdout=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=LOCK_TIMEOUT + 120)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all("5 passed" in out for out in outputs), outputs  # 1 pair + 2 x 2 single-board tests
    assert all("locked by" not in out for out in outputs), outputs  # nobody waited out the lock timeout


WASM_SUITE = """
def test_hard_reset_reconnects(board):
    board.exec("x = 1")
    board.hard_reset()  # the WebAssembly board's reset restarts its process: connected to again
    assert board.eval("'x' in globals()") is False
    assert board.eval("6 * 7") == 42
"""


def test_hard_reset_of_an_emulator_restarted_as_a_new_process(pytester: pytest.Pytester, tmp_path: Path) -> None:
    from pytest_boardfarm.emulators import EmulatorError, WebAssemblyBoard

    try:
        WebAssemblyBoard().check_installed()
    except EmulatorError as exc:
        pytest.skip(str(exc))
    (pytester.path / "farm.yaml").write_text(
        f"locks: {{dir: {tmp_path / 'locks'}}}\nboards:\n  - {{name: wasm-1, emulator: webassembly}}\n"
    )
    pytester.makepyfile(test_wasm=WASM_SUITE)
    run(pytester, "--farm", "farm.yaml").assert_outcomes(passed=1)


def test_a_multi_board_tests_identity_is_its_parameter_tuple() -> None:
    from types import SimpleNamespace

    from pytest_boardfarm.identity import identify, identify_all

    callspec = SimpleNamespace(params={"boards": ("a", "b-1")}, indices={"boards": 0}, _idlist=["a+b-1"])
    item: Any = SimpleNamespace(nodeid="t.py::test_x[a+b-1]", name="test_x[a+b-1]", callspec=callspec)
    tested = identify_all(item)
    assert tested is not None and tested.every == ("a", "b-1") and tested.multi
    assert tested.test == "test_x[a+b-1]"  # one row per combination: a+b and b+a never share a row
    assert identify(item) is None  # the single-board machinery leaves it alone
