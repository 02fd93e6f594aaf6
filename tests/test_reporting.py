"""Per-board reports: JUnit, the terminal table, the GitHub summary, serial logs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .test_plugin import EMULATED_FARM, run

SUITE = """\
import pytest

def test_passes(board):
    board.exec("print('board says hi')")

def test_fails(board):
    board.exec("print('before the crash')")
    board.exec("1/0")

@pytest.mark.board(platform="esp32")
def test_needs_esp32(board):
    pass

def test_host_only():
    pass
"""

# What CI servers read of JUnit (Jenkins, GitLab, GitHub test reporters): the
# element and attribute names, and which attributes are counts.
SUITE_COUNTS = ("tests", "failures", "errors", "skipped")
CASE_CHILDREN = {"failure", "error", "skipped", "system-out", "system-err"}


def check_junit_structure(root: ET.Element) -> None:
    assert root.tag == "testsuites"
    for suite in root:
        assert suite.tag == "testsuite" and suite.get("name")
        for attr in SUITE_COUNTS:
            int(suite.get(attr, "x"))
        float(suite.get("time", "x"))
        cases = suite.findall("testcase")
        assert int(suite.get("tests", "0")) == len(cases)
        assert int(suite.get("failures", "0")) == len(suite.findall("testcase/failure"))
        assert int(suite.get("errors", "0")) == len(suite.findall("testcase/error"))
        assert int(suite.get("skipped", "0")) == len(suite.findall("testcase/skipped"))
        for prop in suite.findall("properties/property"):
            assert prop.get("name") and prop.get("value") is not None
        for case in cases:
            assert case.get("name") and case.get("classname")
            float(case.get("time", "0"))  # optional in the schema; a number when present
            assert {child.tag for child in case} <= CASE_CHILDREN
            for child in case:
                if child.tag in ("failure", "error"):
                    assert child.get("message")


@pytest.fixture
def farm(pytester: pytest.Pytester, tmp_path: Path) -> Path:
    path = pytester.path / "farm.yaml"
    path.write_text(
        EMULATED_FARM.format(locks=tmp_path / "locks").replace(
            "tags: [fast]", "tags: [fast]\n    properties: {rack: A3}"
        )
    )
    return path


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["sequential", "xdist"])
def test_junit_one_suite_per_board(pytester: pytest.Pytester, farm: Path, workers: list[str]) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = run(pytester, "--farm", str(farm), "--farm-junit", "out/junit.xml", *workers)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    root = ET.parse(pytester.path / "out" / "junit.xml").getroot()
    check_junit_structure(root)
    suites = {s.get("name"): s for s in root}
    assert set(suites) == {"sim-1", "sim-2", "(no board)"}
    for name in ("sim-1", "sim-2"):
        suite = suites[name]
        assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
        props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
        assert props["board"] == name and props["platform"] == "microbit"
        assert props["port"].startswith("socket://127.0.0.1:")
        assert "MicroPython v1.9.2" in props["firmware"] and len(props["unique_id"]) == 16
        assert props["health"] == "ok"
        cases = {c.get("name"): c for c in suite.findall("testcase")}
        assert set(cases) == {f"test_passes[{name}]", f"test_fails[{name}]"}
        assert "board says hi" in (cases[f"test_passes[{name}]"].findtext("system-out") or "")
        failure = cases[f"test_fails[{name}]"].find("failure")
        assert failure is not None and failure.get("message") == "ZeroDivisionError: division by zero"
        assert "before the crash" in (cases[f"test_fails[{name}]"].findtext("system-out") or "")
    assert {p.get("name"): p.get("value") for p in suites["sim-1"].findall("properties/property")}[
        "property.rack"
    ] == "A3"
    host = suites["(no board)"]
    assert host.get("tests") == "2" and host.get("skipped") == "1"


def test_unavailable_board_appears_as_errors(pytester: pytest.Pytester, tmp_path: Path) -> None:
    from pytest_boardfarm.emulator import free_port

    (pytester.path / "farm.yaml").write_text(
        f"locks: {{dir: {tmp_path}}}\nboards:\n  - {{name: ok, emulator: microbit}}\n"
        f"  - {{name: unplugged, port: 'socket://127.0.0.1:{free_port()}', platform: rp2040}}\n"
    )
    pytester.makepyfile(test_a="def test_a(board):\n    pass\n\ndef test_b(board):\n    pass\n")
    result = run(pytester, "--farm", "farm.yaml", "--farm-junit", "junit.xml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    root = ET.parse(pytester.path / "junit.xml").getroot()
    check_junit_structure(root)
    suite = next(s for s in root if s.get("name") == "unplugged")
    assert suite.get("tests") == "2" and suite.get("errors") == "2"
    for error in suite.findall("testcase/error"):
        assert "board unplugged unavailable" in (error.get("message") or "") + (error.text or "")
    props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
    assert props["health"].startswith("unavailable: ")
    table = result.stdout.str().split("boardfarm: results per board")[1]
    assert "unplugged" in table and "unavailable" in table


def test_terminal_table_after_the_summary(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    out = run(pytester, "--farm", str(farm)).stdout.str()
    assert out.index("short test summary info") < out.index("boardfarm: results per board")
    assert re.match(r"=+ 2 failed, 3 passed, 1 skipped in [\d.]+s", out.strip().splitlines()[-1])
    table = out.split("boardfarm: results per board")[1].splitlines()
    assert table[1].split() == ["board", "platform", "passed", "failed", "errors", "skipped", "time", "health"]
    sim1 = next(line for line in table if line.startswith("sim-1")).split()
    assert sim1[:6] == ["sim-1", "microbit", "1", "1", "0", "0"] and sim1[-1] == "ok"


def test_github_summary_only_when_asked(pytester: pytest.Pytester, farm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_suite=SUITE)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    plain = run(pytester, "--farm", str(farm)).stdout.str()
    assert "::error" not in plain
    summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    out = run(pytester, "--farm", str(farm), "-n", "2").stdout.str()
    text = summary.read_text()
    assert "## Board farm results" in text
    assert "| sim-1 | microbit | micro:bit" in text and "| 1 | 1 | 0 | 0 |" in text
    assert "| `test_suite::test_fails` | ❌ | ❌ |" in text
    assert "| `test_suite::test_passes` | ✅ | ✅ |" in text
    assert "**test_fails[sim-2]** on `sim-2`: ZeroDivisionError: division by zero" in text
    errors = [line for line in out.splitlines() if line.startswith("::error ")]
    assert len(errors) == 2
    assert all(line.startswith("::error file=test_suite.py,line=8,title=test_fails[sim-") for line in errors)


@pytest.mark.parametrize("args", [("-n", "2"), ("-p", "no:xdist", "-q")])
def test_github_annotations_start_their_line_after_the_progress_dots(
    pytester: pytest.Pytester, farm: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    """GitHub takes a workflow command only at the start of a line: without -v the first
    ::error was written after the progress dots' '[100%]', and that failure had no annotation."""
    pytester.makepyfile(test_suite=SUITE)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "summary.md"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--farm", str(farm), *args, timeout=120)
    errors = [line for line in result.outlines if "::error " in line]
    assert len(errors) == 2 and all(line.startswith("::error file=test_suite.py,line=8,") for line in errors), errors


def test_serial_logs_per_board_per_test(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    run(pytester, "--farm", str(farm), "-n", "2", "--farm-log-dir", "logs")
    logs = pytester.path / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["sim-1", "sim-2"]
    for board in ("sim-1", "sim-2"):
        names = sorted(p.name for p in (logs / board).iterdir())
        assert names == [f"test_suite__test_fails[{board}].log", f"test_suite__test_passes[{board}].log"]
        passed = (logs / board / f"test_suite__test_passes[{board}].log").read_text()
        assert passed.startswith(f"# test_suite.py::test_passes[{board}] on {board}") and "board says hi" in passed
        failed = (logs / board / f"test_suite__test_fails[{board}].log").read_text()
        assert "before the crash" in failed and "ZeroDivisionError: division by zero" in failed


def test_default_log_dir_and_no_logs(pytester: pytest.Pytester, farm: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    run(pytester, "--farm", str(farm), "-k", "passes")
    assert (pytester.path / "boardfarm-results" / "serial-logs" / "sim-1").is_dir()
    pytester.makepyfile(test_other="def test_other(board):\n    pass\n")
    run(pytester, "--farm", str(farm), "--farm-log-dir", "", "-k", "other", "-p", "no:randomly")
    assert not any("test_other" in p.name for p in (pytester.path / "boardfarm-results").rglob("*.log"))


def junit_cases(path: Path) -> dict[str, ET.Element]:
    """test name -> <testcase>, across every board's suite (after checking the structure)."""
    root = ET.parse(path).getroot()
    check_junit_structure(root)
    return {c.get("name", ""): c for s in root for c in s.findall("testcase")}


def junit_outcome(case: ET.Element) -> tuple[str, str]:
    """("passed" / "failure" / "error" / "skipped", its message)."""
    for child in case:
        if child.tag in ("failure", "error", "skipped"):
            return child.tag, child.get("message") or ""
    return "passed", ""


STOPPED_SUITE = """
import time

def test_a(board):
    pass

def test_hang(board):
    open({started!r}, "a").write(board.name + "\\n")
    time.sleep(60)

def test_never(board):
    pass
"""


@pytest.mark.parametrize(
    ("how", "workers"),
    [("SIGINT", []), ("SIGINT", ["-n", "2"]), ("SIGTERM", ["-n", "2"])],
    ids=["ctrl-c", "ctrl-c-xdist", "sigterm-xdist"],
)
def test_stopped_run_reports_the_test_in_flight_as_interrupted(
    pytester: pytest.Pytester, farm: Path, tmp_path: Path, how: str, workers: list[str]
) -> None:
    from .test_faults import start_run

    started = tmp_path / "started"
    pytester.makepyfile(test_stop=STOPPED_SUITE.format(started=str(started)))
    in_flight = 2 if workers else 1
    proc = start_run(
        pytester,
        started,
        in_flight,
        "--farm-junit",
        "junit.xml",
        *workers,
        stdout=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # even if our caller ignores Ctrl-C
    )
    time.sleep(0.3)  # into the sleep
    if how == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
    else:
        proc.send_signal(signal.SIGTERM)  # a cancelled CI job
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    cases = junit_cases(pytester.path / "junit.xml")
    assert len(cases) == 6  # every test it knew of
    hung = [b.strip() for b in started.read_text().split()]
    for board in ("sim-1", "sim-2"):
        outcome = junit_outcome(cases[f"test_hang[{board}]"])
        before = ("error", "not run: the run was stopped (Ctrl-C or SIGTERM) before this test")
        if board in hung:  # its tests run together, in order: test_a before the hang
            assert outcome == ("error", "interrupted: the run was stopped (Ctrl-C or SIGTERM) during this test")
            assert junit_outcome(cases[f"test_a[{board}]"]) == ("passed", "")
        else:  # without xdist, the other board's tests come after the first board's
            assert outcome == before
            assert junit_outcome(cases[f"test_a[{board}]"]) == before
        assert junit_outcome(cases[f"test_never[{board}]"]) == (
            "error",
            "not run: the run was stopped (Ctrl-C or SIGTERM) before this test",
        )
    table = out.split("boardfarm: results per board")[1].splitlines()
    for board in ("sim-1", "sim-2"):
        row = next(line for line in table if line.startswith(board)).split()
        assert row[1] == "microbit"  # farm.yaml's platform, even for a board no test reached
        assert row[2:5] == (["1", "0", "2"] if board in hung else ["0", "0", "3"])  # passed, failed, errors


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["sequential", "xdist"])
def test_run_stopped_before_its_session_started_still_writes_junit(
    pytester: pytest.Pytester, farm: Path, workers: list[str]
) -> None:
    pytester.makeconftest("def pytest_sessionstart(session):\n    raise KeyboardInterrupt\n")
    pytester.makepyfile(test_suite=SUITE)
    result = run(pytester, "--farm", str(farm), "--farm-junit", "junit.xml", *workers)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert junit_cases(pytester.path / "junit.xml") == {}  # valid, and it knew of no test yet


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["sequential", "xdist"])
def test_collect_only_reports_no_errors(
    pytester: pytest.Pytester, farm: Path, workers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.makepyfile(test_suite=SUITE)
    result = run(pytester, "--farm", str(farm), "--farm-junit", "junit.xml", "--collect-only", *workers)
    assert result.ret == pytest.ExitCode.OK
    out = result.stdout.str()
    assert "test_passes[sim-1]" in out  # it did list them
    assert "::error" not in out and "not run" not in out
    assert "boardfarm: results per board" not in out  # no test ran: no table
    assert junit_cases(pytester.path / "junit.xml") == {}
    assert "⚠️" not in (summary.read_text() if summary.exists() else "")


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["sequential", "xdist"])
def test_deselected_tests_are_not_errors(pytester: pytest.Pytester, farm: Path, workers: list[str]) -> None:
    pytester.makepyfile(
        test_suite="""
def test_ok(board):
    pass

def test_bad(board):
    assert board.name == "sim-1"
"""
    )
    args = ["--farm", str(farm), "--farm-junit", "junit.xml", "-v", *workers]
    pytester.runpytest_subprocess(*args, timeout=120)  # test_bad[sim-2] fails: --lf's cache
    again = pytester.runpytest_subprocess(*args, "--lf", "test_suite.py", timeout=120)
    assert again.ret == pytest.ExitCode.TESTS_FAILED
    cases = junit_cases(pytester.path / "junit.xml")
    assert {name: junit_outcome(case)[0] for name, case in cases.items()} == {"test_bad[sim-2]": "failure"}
    for deselect in (["-k", "ok"], ["--deselect", "test_suite.py::test_bad"], ["-m", "slow"]):
        run(pytester, *args, *deselect)
        cases = junit_cases(pytester.path / "junit.xml")
        assert set(cases) == ({"test_ok[sim-1]", "test_ok[sim-2]"} if deselect[0] != "-m" else set())


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["sequential", "xdist"])
def test_tests_cut_off_by_maxfail_are_not_run_errors(pytester: pytest.Pytester, farm: Path, workers: list[str]) -> None:
    pytester.makepyfile(
        test_suite="""
def test_fails(board):
    assert board.name == "nobody"

def test_later(board):
    pass
"""
    )
    result = run(pytester, "--farm", str(farm), "--farm-junit", "junit.xml", "-x", *workers)
    cases = junit_cases(pytester.path / "junit.xml")
    assert len(cases) == 4, result.stdout.str()
    outcomes = [junit_outcome(c) for c in cases.values()]
    assert 1 <= [o[0] for o in outcomes].count("failure") <= (2 if workers else 1)  # -n: each board may fail first
    cut = [o for o in outcomes if o[0] == "error"]
    reason = re.compile(r"not run: the run stopped after [12] failures \(-x/--maxfail\) before this test")
    assert all(reason.fullmatch(o[1]) for o in cut), cut
    if not workers:
        assert len(cut) == 3  # nothing ran after the first failure


def test_reports_are_best_effort(pytester: pytest.Pytester, farm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (pytester.path / "a-file").write_text("not a directory\n")  # as root, permissions stop nothing: this does
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "a-file" / "summary.md"))
    pytester.makepyfile(test_suite=SUITE)
    result = run(
        pytester,
        "--farm",
        str(farm),
        "--farm-log-dir",
        "a-file/logs",
        "--farm-junit",
        "a-file/junit.xml",
        "-W",
        "always",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the tests' own verdict, as without reports
    result.assert_outcomes(passed=3, failed=2, skipped=1)
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    assert out.count("could not write the serial log") == 1
    assert "further serial log failures are not reported" in out
    assert out.count("could not write the JUnit file a-file/junit.xml: [Errno") == 1
    assert out.count("could not write the GitHub job summary") == 1
    assert "JUnit per board:" not in out  # the table does not point at a file that is not there


def report(nodeid: str, when: str, outcome: str = "passed", longrepr: str | None = None) -> pytest.TestReport:
    from pytest_boardfarm.results import BOARD_PROPERTY

    return pytest.TestReport(
        nodeid, ("t.py", 1, nodeid), {}, outcome, longrepr, when, user_properties=[(BOARD_PROPERTY, "b")]
    )


def test_a_test_without_its_call_report_is_never_passed() -> None:
    from pytest_boardfarm.results import ResultsCollector, RunEnd

    collector = ResultsCollector()
    for nodeid in ("t.py::a[b]", "t.py::cut[b]", "t.py::crashed[b]", "t.py::never[b]"):
        collector.note_collected(nodeid, "b")
    for phase in ("setup", "call", "teardown"):
        collector.pytest_runtest_logreport(report("t.py::a[b]", phase))
    collector.pytest_runtest_logreport(report("t.py::cut[b]", "setup"))  # Ctrl-C in its call: no call report
    collector.pytest_runtest_logreport(report("t.py::crashed[b]", "setup"))
    collector.pytest_runtest_logreport(report("t.py::crashed[b]", "teardown", "failed", "worker 'gw0' crashed"))
    end = RunEnd.stopped("the run was stopped")
    (board,) = collector.by_board(end)
    got = {t.nodeid: (t.outcome, t.summary) for t in board.tests}
    assert got == {
        "t.py::a[b]": ("passed", "passed"),
        "t.py::cut[b]": ("error", "interrupted: the run was stopped during this test"),
        "t.py::crashed[b]": ("error", "interrupted: the run was stopped during this test"),
        "t.py::never[b]": ("error", "not run: the run was stopped before this test"),
    }
    assert "worker 'gw0' crashed" in next(t.details for t in board.tests if t.nodeid == "t.py::crashed[b]")
    (board,) = collector.by_board(RunEnd(nothing_runs=True))  # --collect-only, --setup-only
    assert [t.nodeid for t in board.tests] == ["t.py::a[b]"]


def test_a_crashed_test_counts_once_under_its_board() -> None:
    """xdist's report for a test that crashed its worker carries no user properties: it is
    the test's, under its board, not another test under "(no board)"."""
    from pytest_boardfarm.results import ResultsCollector

    collector = ResultsCollector()
    collector.note_collected("t.py::crashed[b]", "b")
    collector.note_collected("t.py::pair[b+c]", "b")
    collector.note_collected("t.py::pair[b+c]", "c")
    collector.pytest_runtest_logreport(report("t.py::crashed[b]", "setup"))
    for nodeid in ("t.py::crashed[b]", "t.py::pair[b+c]"):  # as xdist's handle_crashitem makes it
        crash = f"worker 'gw0' crashed while running {nodeid!r}"
        rep = pytest.TestReport(nodeid, ("t.py", None, "t.py"), {}, "failed", crash, "???")  # type: ignore[arg-type]
        collector.pytest_runtest_logreport(rep)
    got = {(t.nodeid, t.board, t.outcome) for board in collector.by_board() for t in board.tests}
    assert got == {
        ("t.py::crashed[b]", "b", "error"),
        ("t.py::pair[b+c]", "b", "error"),
        ("t.py::pair[b+c]", "c", "error"),
    }
