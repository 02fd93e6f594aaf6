"""Per-board results, gathered from pytest's reports in the controlling process.

Each test's report carries its board's name (set at collection) and the
board's identity (set when the board was first used) in ``user_properties``;
xdist forwards those with every report, so this works the same with and
without workers. JUnit, the terminal table and the CI summary read from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

BOARD_PROPERTY = "boardfarm.board"
TEST_PROPERTY = "boardfarm.test"  # the test's name without its board's id (identity.py)
INFO_PROPERTY = "boardfarm.info"
# A multi-board test: its boards in role order, and {board: identity}. It is counted
# once under each of its boards (one row per board in the table and the JUnit file).
BOARDS_PROPERTY = "boardfarm.boards"
BOARDS_INFO_PROPERTY = "boardfarm.boards.info"
NO_BOARD = "(no board)"
# In an xdist worker's output to the controller: the message of the pytest.exit() that ended it.
WORKER_EXIT = "boardfarm.exit"
SERIAL_SECTION = "serial log"


class ReportWarning(UserWarning):
    """A report (serial log, JUnit file) could not be written; the tests go on."""


NOT_RUN = "not run: the run ended before this test"
CUT_OFF = "interrupted: the run ended during this test"


@dataclass(frozen=True)
class RunEnd:
    """How the run ended, as the tests it cut off should read (never "passed")."""

    before: str = NOT_RUN  # a collected test that never reported
    during: str = CUT_OFF  # a test whose setup passed but whose call never reported
    nothing_runs: bool = False  # --collect-only, --setup-only, --setup-plan: no test was meant to run

    @classmethod
    def stopped(cls, why: str) -> RunEnd:
        return cls(f"not run: {why} before this test", f"interrupted: {why} during this test")


@dataclass
class TestResult:
    nodeid: str
    board: str
    outcome: str = "passed"  # passed / failed / error / skipped
    duration: float = 0.0
    message: str = ""  # one line: the crash message or the skip reason
    details: str = ""  # the full failure text
    serial: str = ""
    path: str = ""
    line: int = 0  # 1-based line of the failure (or of the test), for annotations
    test: str = ""  # the name without the board's id: a row of the tests x boards matrix
    started: bool = False  # its setup passed
    called: bool = False  # its call phase reported (a stopped run aborts a test without one)

    @property
    def summary(self) -> str:
        """One line: the message's last line (a device traceback's exception line)."""
        lines = [line.strip() for line in self.message.splitlines() if line.strip()]
        return lines[-1] if lines else self.outcome

    @property
    def name(self) -> str:
        return self.nodeid.split("::", 1)[-1]

    @property
    def row(self) -> str:
        return self.test or self.name

    @property
    def classname(self) -> str:
        module = self.nodeid.split("::", 1)[0]
        return module.removesuffix(".py").replace("/", ".")


@dataclass
class BoardResults:
    name: str
    info: dict[str, str] = field(default_factory=dict)
    tests: list[TestResult] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.tests if t.outcome == outcome)

    @property
    def duration(self) -> float:
        return sum(t.duration for t in self.tests)


def _property(report: pytest.TestReport, key: str) -> Any:
    """The last value recorded under ``key`` (health can change during a test)."""
    found = None
    for name, value in report.user_properties:
        if name == key:
            found = value
    return found


class ResultsCollector:
    """A pytest plugin object: collects results as reports arrive."""

    def __init__(self) -> None:
        self.tests: dict[tuple[str, str], TestResult] = {}  # (nodeid, board) -> result
        self.info: dict[str, dict[str, str]] = {}
        self.known: dict[str, dict[str, str]] = {}  # board -> what farm.yaml says, for boards no test reached
        # (nodeid, board) -> test name, for tests that never report
        self.collected: dict[tuple[str, str], str] = {}
        self._collected_boards: dict[str, list[str]] = {}  # nodeid -> its boards, from the above

    def note_collected(self, nodeid: str, board: str, test: str = "") -> None:
        self.collected[(nodeid, board)] = test
        boards = self._collected_boards.setdefault(nodeid, [])
        if board not in boards:
            boards.append(board)

    def never_reported(self) -> int:
        """Collected (test, board) pairs with no report: in the table and JUnit, errors."""
        return sum(1 for key in self.collected if key not in self.tests)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        boards = _property(report, BOARDS_PROPERTY)
        if not boards and not report.user_properties:  # xdist's report of a test that crashed its worker
            boards = self._collected_boards.get(report.nodeid)
            if boards and len(boards) == 1:
                self._record(report, boards[0])
                return
        if boards:
            infos = _property(report, BOARDS_INFO_PROPERTY) or {}
            for board, info in (json.loads(infos) if isinstance(infos, str) else infos).items():
                self.info[board] = dict(info)
            for board in boards:
                self._record(report, str(board), many=True)
            return
        board = _property(report, BOARD_PROPERTY) or NO_BOARD
        info = _property(report, INFO_PROPERTY)
        if info:
            self.info[board] = dict(json.loads(info) if isinstance(info, str) else info)
        self._record(report, board)

    def _record(self, report: pytest.TestReport, board: str, *, many: bool = False) -> None:
        """One report phase into the test's result under ``board`` (``many``: one of a
        multi-board test's boards: only that board's serial log goes there)."""
        result = self.tests.get((report.nodeid, board))
        if result is None:
            result = self.tests[(report.nodeid, board)] = TestResult(report.nodeid, board)
            result.test = str(_property(report, TEST_PROPERTY) or "")
            result.path, line = report.location[0], report.location[1]
            result.line = (line or 0) + 1
        result.duration += report.duration
        result.started |= report.when == "setup" and report.passed
        result.called |= report.when == "call"
        for title, text in report.sections:
            if title.startswith(f"{SERIAL_SECTION} {board} (" if many else SERIAL_SECTION):
                result.serial += text
        if report.skipped and result.outcome == "passed":
            result.outcome = "skipped"
            result.message = _skip_reason(report)
        elif report.failed:
            if report.when == "call" and result.outcome != "error":
                result.outcome = "failed"
            else:
                result.outcome = "error"
            result.message = _crash_message(report)
            result.details = report.longreprtext
            crash = getattr(report.longrepr, "reprcrash", None)
            if crash is not None and str(crash.path).endswith(result.path):
                result.line = crash.lineno

    def by_board(self, end: RunEnd = RunEnd()) -> list[BoardResults]:
        boards: dict[str, BoardResults] = {}
        for result in self._final(end):
            entry = boards.setdefault(
                result.board, BoardResults(result.board, self.info.get(result.board, self.known.get(result.board, {})))
            )
            entry.tests.append(result)
        return sorted(boards.values(), key=lambda b: (b.name == NO_BOARD, b.name))

    def _final(self, end: RunEnd) -> list[TestResult]:
        """Every test as it ended: a test cut off by a stop is an error, never passed."""
        out = []
        for result in self.tests.values():
            if result.started and not result.called and result.outcome != "skipped":
                if end.nothing_runs:
                    continue
                message = "\n".join(filter(None, (result.message, end.during)))  # its summary: the stop
                details = "\n".join(filter(None, (end.during, result.details)))
                result = replace(result, outcome="error", message=message, details=details)
            out.append(result)
        if not end.nothing_runs:
            for (nodeid, board), test in self.collected.items():
                if (nodeid, board) not in self.tests:  # collected, never reported: the run ended early
                    out.append(TestResult(nodeid, board, "error", message=end.before, test=test))
        return out


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr or "")


def _crash_message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    text = report.longreprtext.strip().splitlines()
    return text[-1] if text else "failed"
