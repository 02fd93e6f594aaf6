"""Which board a test runs on: decided once, at parametrization, and carried from there.

The board is the test's ``board`` parameter (``item.callspec.params``), never
read back from the test id's text: ids are escaped (board ``café`` shows as
``caf\\xe9``), and other parameters can look like board names (boards ``a`` and
``a-1``, a test parametrized over ``"1"``: ``test_x[a-1]`` runs on ``a``).

Where tests are collected (the only process, or each xdist worker) the item
knows. The xdist controller sees only test ids, so each worker writes what it
collected, {test id: board}, to a private directory the controller made and
named in the worker's ``workerinput``; the controller reads it back
(:class:`WorkerBoards`) for scheduling and for tests that never report.

A test with several boards (``@pytest.mark.boards``, multiboard.py) has a tuple
of names as its ``boards`` parameter, in role order: :func:`identify_all` gives
them; :func:`identify` stays for the one board of a single-board test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import process_dirs

BOARD_ARG = "board"
BOARDS_ARG = "boards"  # a multi-board test's parameter: its boards' names in role order
WORKER_DIR_KEY = "boardfarm_boards_dir"
DIR_PREFIX = "boardfarm-boards-"  # then the controller's pid: a SIGKILLed run's is removed by the next


@dataclass(frozen=True)
class TestBoard:
    """A test's board, and the test's name without the board's id (one row of a
    tests x boards matrix: ``test_x[1]`` for ``test_x[sim-1-1]``)."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    board: str  # the only board, or a multi-board test's first
    test: str
    boards: tuple[str, ...] = ()  # a multi-board test's boards in role order; () for one board

    @property
    def every(self) -> tuple[str, ...]:
        """Every board the test runs on."""
        return self.boards or (self.board,)

    @property
    def multi(self) -> bool:
        return bool(self.boards)


def identify(item: pytest.Item) -> TestBoard | None:
    """The board of a single-board test, or None for a test without one (or with several)."""
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get(BOARD_ARG) if callspec is not None else None
    if not isinstance(name, str):  # no board fixture, or the "no-board" skip (None)
        return None
    return TestBoard(name, _name_without_board(item, callspec))


def identify_all(item: pytest.Item | None) -> TestBoard | None:
    """Every board ``item`` runs on: its one board, or a multi-board test's tuple."""
    if item is None:
        return None
    callspec = getattr(item, "callspec", None)
    names = callspec.params.get(BOARDS_ARG) if callspec is not None else None
    if isinstance(names, tuple) and names and all(isinstance(n, str) for n in names):
        # The row keeps the boards' id: under one board, test_x[a+b] and test_x[b+a] are two rows.
        return TestBoard(names[0], item.nodeid.split("::", 1)[-1], names)
    return identify(item)


def _name_without_board(item: pytest.Item, callspec: Any) -> str:
    """The test's name (past the file's ``::``) with the board's id taken out of its
    parameters. The board is parametrized first (tryfirst), so its id comes first."""
    full = item.nodeid.split("::", 1)[-1]
    ids = list(getattr(callspec, "_idlist", ()))
    if not ids or next(iter(callspec.indices), None) != BOARD_ARG or not full.endswith(item.name):
        return full  # not the shape we made: keep the whole name, never a wrong one
    original = getattr(item, "originalname", item.name.split("[", 1)[0])
    others = "-".join(ids[1:])
    return full[: len(full) - len(item.name)] + (f"{original}[{others}]" if others else original)


def guess_board(nodeid: str, boards: Sequence[str]) -> str | None:
    """The board from a test id's text, for when nothing better is known (a remote
    xdist worker): only when exactly one board name fits the parameters."""
    if "[" not in nodeid:
        return None
    params = nodeid.split("[", 1)[1].rsplit("]", 1)[0]
    found = set()
    for name in boards:
        for shown in {name, name.encode("unicode_escape").decode("ascii")}:  # pytest escapes non-ASCII
            if params == shown or params.startswith(shown + "-"):
                found.add(name)
    return found.pop() if len(found) == 1 else None


def write_worker_boards(config: pytest.Config, items: Sequence[pytest.Item]) -> None:
    """In an xdist worker: tell the controller each collected test's board."""
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    directory = workerinput.get(WORKER_DIR_KEY)
    if not directory:
        return
    found = {item.nodeid: identify_all(item) for item in items}
    record = {nodeid: [tb.board, tb.test, list(tb.boards)] for nodeid, tb in found.items() if tb is not None}
    path = Path(directory, f"{workerinput['workerid']}.json")
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record), encoding="utf-8")
    os.replace(partial, path)  # the controller never reads half a file


class WorkerBoards:
    """The controller's side: a private directory for the workers' maps, read once each."""

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._maps: dict[str, dict[str, TestBoard] | None] = {}

    def configure_node(self, node: Any) -> None:
        if self._dir is None:
            self._dir = process_dirs.make(DIR_PREFIX)
        node.workerinput[WORKER_DIR_KEY] = str(self._dir)

    def of(self, workerid: str) -> dict[str, TestBoard] | None:
        """What this worker collected, {test id: board}; None if it wrote nothing."""
        if workerid not in self._maps:
            found = None
            if self._dir is not None:
                with contextlib.suppress(OSError, ValueError, TypeError):
                    record = json.loads(Path(self._dir, f"{workerid}.json").read_text(encoding="utf-8"))
                    found = {nodeid: _from_record(entry) for nodeid, entry in record.items()}
            self._maps[workerid] = found
        return self._maps[workerid]

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _from_record(entry: list[Any]) -> TestBoard:
    board, test, *rest = entry
    boards = tuple(str(b) for b in rest[0]) if rest else ()
    return TestBoard(str(board), str(test), boards)
