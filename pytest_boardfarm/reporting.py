"""Reports for the whole run, written by the controlling process.

Gathers per-board results (results.py) and, at the end, writes the JUnit file
(junit.py), prints the per-board table after pytest's own summary, and on
GitHub Actions appends the job summary and failure annotations (github.py).
Those two are imported when written: junit-xml brings xml.dom and six along.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Generator, Mapping
from typing import Any

import pytest

from . import settings
from .identity import TestBoard, guess_board, identify_all
from .results import WORKER_EXIT, BoardResults, ResultsCollector, RunEnd

# --collect-only, --setup-only, --setup-plan, --fixtures, --fixtures-per-test: no test is meant to run
_NOTHING_RUNS = ("collectonly", "setuponly", "setupplan", "showfixtures", "show_fixtures_per_test")
_MAXFAIL = re.compile(r"stopping after (\d+) failures")  # pytest's and xdist's words for -x/--maxfail


def _stopped_by_user(interrupt: BaseException | None) -> bool:
    """Ctrl-C or SIGTERM here, or (with xdist) in a worker; not pytest.exit() or -x."""
    if interrupt is None:
        return False
    return type(interrupt) is KeyboardInterrupt or str(interrupt).endswith("received keyboard-interrupt")


class FarmReporter(ResultsCollector):
    def __init__(
        self,
        config: pytest.Config,
        boards: list[str],
        collected_by: Callable[[str], Mapping[str, TestBoard] | None],
        known: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        super().__init__()
        self.known = {name: dict(facts) for name, facts in (known or {}).items()}  # farm.yaml's, per board
        self.config = config
        self.boards = boards
        self.collected_by = collected_by  # xdist worker id -> {test id: board}
        self.junit_path = settings.junit_path(config)
        self.junit_error: str | None = None
        self._collected_from_workers = False
        self._session: pytest.Session | None = None
        self._interrupt: BaseException | None = None
        self._worker_exit: str | None = None  # a worker's pytest.exit(): why its tests never ran
        self._written = False

    # -- what was collected (so tests that never report still appear) ----------

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """The tests meant to run: after -k, -m, --lf and --deselect took theirs out."""
        for item in session.items:
            tested = identify_all(item)
            if tested:
                for board in tested.every:  # a multi-board test under each of its boards
                    self.note_collected(item.nodeid, board, tested.test)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if self._collected_from_workers:
            return
        self._collected_from_workers = True
        found = self.collected_by(node.gateway.id)
        for nodeid in ids:  # a worker sends its session.items: deselection already done
            if found is not None:
                tested = found.get(nodeid)
                if tested:
                    for each in tested.every:
                        self.note_collected(nodeid, each, tested.test)
            else:  # a worker that could not tell us (remote): the id's text, when unambiguous
                board = guess_board(nodeid, self.boards)
                if board:
                    self.note_collected(nodeid, board)

    # -- how the run ended -----------------------------------------------------

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._session = session

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        self._interrupt = excinfo.value  # Ctrl-C, SIGTERM, pytest.exit(), or xdist stopping
        if self._session is not None:
            # The JUnit file now, and again at the end: xdist may wait 10 s for workers busy
            # in a test before it kills them, and whoever stopped us may SIGKILL us first.
            self._write_junit(self.by_board(self.run_end()))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        message = (getattr(node, "workeroutput", None) or {}).get(WORKER_EXIT)
        if message is not None and self._worker_exit is None:
            self._worker_exit = f"pytest.exit() on {node.gateway.id}: {message}"

    def run_end(self) -> RunEnd:
        """What to say of the tests the run cut off, and whether any test was meant to run."""
        option = self.config.option
        if any(getattr(option, name, False) for name in _NOTHING_RUNS):
            return RunEnd(nothing_runs=True)
        session = self._session
        reasons = [str(r) for r in (session.shouldfail, session.shouldstop) if r] if session else []
        if self._interrupt is not None:
            reasons.append(str(self._interrupt))
        if self._worker_exit is not None:
            reasons.append(self._worker_exit)
        maxfail = next((m for m in map(_MAXFAIL.search, reasons) if m), None)
        if maxfail:
            return RunEnd.stopped(f"the run stopped after {maxfail.group(1)} failures (-x/--maxfail)")
        if _stopped_by_user(self._interrupt):
            return RunEnd.stopped("the run was stopped (Ctrl-C or SIGTERM)")
        if reasons:
            return RunEnd.stopped(f"the run stopped early ({reasons[0]})")
        return RunEnd()

    # -- the end of the run ----------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_terminal_summary(self) -> Generator[None, None, None]:
        """The table goes after pytest's short summary; its final counts line stays last."""
        result = yield
        self._terminal_table(self.by_board(self.run_end()))
        return result

    @pytest.hookimpl(trylast=True)  # after xdist has torn its workers down: every report is in
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self._write_reports()
        self._fail_for_tests_never_run(session)

    def _fail_for_tests_never_run(self, session: pytest.Session) -> None:
        """A run that ended with collected tests never run, for no reason pytest knows of (xdist
        gave up on a crashed worker: --max-worker-restart), does not exit 0: the table and the
        JUnit file count those tests as errors. A stop (-x, Ctrl-C, pytest.exit) says why."""
        if session.exitstatus != pytest.ExitCode.OK or self.run_end() != RunEnd():
            return
        missing = self.never_reported()
        if missing:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            terminal = self.config.pluginmanager.get_plugin("terminalreporter")
            if terminal is not None:
                terminal.write_line(f"boardfarm: {missing} collected test(s) never ran: the run fails", red=True)

    def pytest_unconfigure(self) -> None:
        """A run stopped before its session started still leaves a (valid, maybe empty) report."""
        if self._interrupt is not None or self._session is not None:  # not for --help, --version
            self._write_reports()

    def _write_reports(self) -> None:
        """JUnit and GitHub output, once. Best effort: a report that cannot be written is
        a warning, never a reason to lose the run's results or change its exit status."""
        if self._written:
            return
        self._written = True
        boards = self.by_board(self.run_end())
        self._write_junit(boards)
        try:
            self._github(boards)
        except (OSError, ValueError) as exc:
            self._warn(f"could not write the GitHub job summary: {exc}")

    def _write_junit(self, boards: list[BoardResults]) -> None:
        if not self.junit_path or self.junit_error is not None:  # warned once is enough
            return
        from .junit import write_junit

        try:
            write_junit(self.junit_path, boards)
        except (OSError, ValueError) as exc:
            self.junit_error = str(exc)
            self._warn(f"could not write the JUnit file {settings.shown(self.junit_path, self.config)}: {exc}")

    def _terminal_table(self, boards: list[BoardResults]) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or not boards:
            return
        headers: tuple[str, ...] = ("board", "platform", "passed", "failed", "errors", "skipped", "time", "health")
        rows: list[tuple[str, ...]] = [
            (
                b.name,
                b.info.get("platform", ""),
                str(b.count("passed")),
                str(b.count("failed")),
                str(b.count("error")),
                str(b.count("skipped")),
                f"{b.duration:.2f}s",
                b.info.get("health", ""),
            )
            for b in boards
        ]
        if any("image" in b.info for b in boards):  # --farm-flash: what each board ran
            headers = (*headers, "image")
            rows = [(*row, _image(b.info)) for row, b in zip(rows, boards, strict=True)]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        reporter.write_sep("=", "boardfarm: results per board")
        for row in (headers, *rows):
            cells = [
                cell.ljust(width) if column in (0, 1, 7, 8) else cell.rjust(width)
                for column, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            reporter.write_line("  ".join(cells).rstrip())
        if self.junit_path and self.junit_error is None:
            reporter.write_line(f"JUnit per board: {settings.shown(self.junit_path, self.config)}")
        log_dir = settings.log_dir(self.config)
        if log_dir:
            reporter.write_line(f"serial logs: {settings.shown(log_dir, self.config)}/<board>/")

    def _github(self, boards: list[BoardResults]) -> None:
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if not summary or not boards:
            return
        from .github import failure_annotations, markdown_summary

        with open(summary, "a", encoding="utf-8") as f:
            f.write(markdown_summary(boards))
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        annotations = failure_annotations(boards)
        if annotations and isinstance(reporter, pytest.TerminalReporter) and reporter._width_of_current_line:
            reporter.write("\n")  # after the progress dots' [100%]: GitHub reads a command only at a line's start
        for line in annotations:
            if reporter is not None:
                reporter.write_line(line)
            else:
                print(line)

    def _warn(self, text: str) -> None:
        """One clear line on the terminal (the run is ending: pytest's warning summary has been printed)."""
        line = f"boardfarm: WARNING: {text} (the test results are not affected)"
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line, yellow=True, bold=True)
        else:
            print(line, file=sys.stderr)


def _image(info: Mapping[str, str]) -> str:
    """The image a board ran and what flashing did: ``app.hex (1a2b3c4d), flashed``."""
    return f"{info['image']}, {info.get('flash', '?')}" if "image" in info else ""
