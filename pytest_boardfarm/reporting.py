"""Reports for the whole run, written by the controlling process.

Gathers per-board results (results.py) and, at the end, writes the JUnit file
(junit.py), prints the per-board table after pytest's own summary, and on
GitHub Actions appends the job summary and failure annotations (github.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any

import pytest

from .github import failure_annotations, markdown_summary
from .identity import TestBoard, guess_board, identify
from .junit import write_junit
from .results import BoardResults, ResultsCollector


class FarmReporter(ResultsCollector):
    def __init__(
        self,
        config: pytest.Config,
        boards: list[str],
        collected_by: Callable[[str], Mapping[str, TestBoard] | None],
    ) -> None:
        super().__init__()
        self.config = config
        self.boards = boards
        self.collected_by = collected_by  # xdist worker id -> {test id: board}
        junit = config.getoption("farm_junit")
        self.junit_path = Path(junit) if junit else None
        self._collected_from_workers = False

    # -- what was collected (so tests that never report still appear) ----------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            tested = identify(item)
            if tested:
                self.note_collected(item.nodeid, tested.board, tested.test)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if self._collected_from_workers:
            return
        self._collected_from_workers = True
        found = self.collected_by(node.gateway.id)
        for nodeid in ids:
            if found is not None:
                tested = found.get(nodeid)
                if tested:
                    self.note_collected(nodeid, tested.board, tested.test)
            else:  # a worker that could not tell us (remote): the id's text, when unambiguous
                board = guess_board(nodeid, self.boards)
                if board:
                    self.note_collected(nodeid, board)

    # -- the end of the run ----------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_terminal_summary(self) -> Generator[None, None, None]:
        """The table goes after pytest's short summary; its final counts line stays last."""
        result = yield
        self._terminal_table(self.by_board())
        return result

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, None, None]:
        result = yield
        boards = self.by_board()
        if self.junit_path:
            write_junit(self.junit_path, boards)
        self._github(boards)
        return result

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
        if self.junit_path:
            reporter.write_line(f"JUnit per board: {self.junit_path}")
        log_dir = self.config.getoption("farm_log_dir")
        if log_dir:
            reporter.write_line(f"serial logs: {log_dir}/<board>/")

    def _github(self, boards: list[BoardResults]) -> None:
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if not summary or not boards:
            return
        with open(summary, "a", encoding="utf-8") as f:
            f.write(markdown_summary(boards))
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        for line in failure_annotations(boards):
            if reporter is not None:
                reporter.write_line(line)
            else:
                print(line)


def _image(info: Mapping[str, str]) -> str:
    """The image a board ran and what flashing did: ``app.hex (1a2b3c4d), flashed``."""
    return f"{info['image']}, {info.get('flash', '?')}" if "image" in info else ""
