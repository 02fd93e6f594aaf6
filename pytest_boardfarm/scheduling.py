"""pytest-xdist scheduling: all tests of one board on one worker, in order.

xdist's loadscope scheduler sends whole scopes to workers; here a test's scope
is its board. The controller never collects, so the board of each test id comes
from the map its worker wrote at collection (identity.py); a test id missing
from it (a remote worker) falls back to the id's text, when only one board name
fits, else the test is a scope of its own. A worker that needs work gets a
board no other run holds, while one is left, rather than wait.

A multi-board test (``@pytest.mark.boards``) joins its boards into one scope:
every test of those boards, single- and multi-board, goes to one worker, which
runs the single-board tests first (multiboard.py orders the collection) and then
takes the boards together. So no worker ever waits on a board another worker of
the same run holds. (xdist's own ``loadgroup`` mode
cannot be used: it tags items by writing ``item._nodeid``, which pytest 9.2 no
longer reads.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from .identity import TestBoard, guess_board


class BoardScheduling(LoadScopeScheduling):  # type: ignore[misc]
    def __init__(
        self,
        config: pytest.Config,
        log: Any,
        boards: Sequence[str],
        collected_by: Callable[[str], Mapping[str, TestBoard] | None],
        is_free: Callable[[str], bool] = lambda board: True,
    ) -> None:
        super().__init__(config, log)
        self.boards = list(boards)
        self.collected_by = collected_by  # worker id -> {test id: board}
        self.is_free = is_free  # does no other run hold the board now?
        self.boards_of: dict[str, tuple[str, ...]] = {}  # test id -> its boards (none, one, or several)
        self.scope_boards: dict[str, tuple[str, ...]] = {}
        self._group_of: dict[str, tuple[str, ...]] | None = None
        self._replacing = 0  # workers that crashed before collecting: xdist starts one in each's place

    def add_node(self, node: Any) -> None:
        super().add_node(node)
        if self._replacing:  # a crashed worker's replacement: its collection is awaited in its place
            self._replacing -= 1
            self.numnodes += 1

    @property
    def tests_finished(self) -> bool:
        """Not while the only workers left crashed before collecting: their replacements
        are coming (at xdist's crash limit, xdist ends the run itself)."""
        return not (self._replacing and self.collection is None) and bool(super().tests_finished)

    def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
        found = self.collected_by(node.gateway.id)
        for nodeid in collection:
            if found is not None:  # the worker said: a test it did not list has no board
                self.boards_of[nodeid] = found[nodeid].every if nodeid in found else ()
            elif nodeid not in self.boards_of:
                guessed = guess_board(nodeid, self.boards)
                self.boards_of[nodeid] = (guessed,) if guessed else ()
        self._group_of = None
        super().add_node_collection(node, collection)

    def _split_scope(self, nodeid: str) -> str:
        boards = self.boards_of.get(nodeid)
        if not boards:
            return nodeid
        if self._group_of is None:
            self._group_of = board_groups(self.boards_of.values())
        group = self._group_of.get(boards[0], (boards[0],))
        scope = f"board {'+'.join(group)}"
        self.scope_boards[scope] = group
        return scope

    def remove_node(self, node: Any) -> str | None:
        """As xdist's, but the test that crashed its worker is not queued again: xdist's
        loadscope would run it again on each replacement worker until its crash limit
        stops the run, and the board's later tests never run.

        A worker gone before its collection came (it ended in its collection, or crashed
        starting) is no longer counted: xdist would wait for that collection for ever, the
        other workers idle. A crashed one's replacement counts in its place, as in xdist.

        A worker that ended its session normally with tests still sent to it (pytest.exit()
        in its collection: pytest still sends the collection) crashed on none of them: they
        go back to the others, or, with no other worker, to nobody (xdist asserts that such
        a worker names no test, and stops with "no active workers" when work is left)."""
        finished = getattr(node, "workeroutput", None) is not None  # sent by "workerfinished" only: no crash
        workload = self.assigned_work.pop(node)
        if node not in self.registered_collections:
            self.numnodes -= 1
            if not finished:
                self._replacing += 1
            if self.collection is None and self.registered_collections and self.collection_is_completed:
                self.schedule()
            return None
        pending: list[str] = [nodeid for unit in workload.values() for nodeid, done in unit.items() if not done]
        if not pending:
            return None
        crashed = None if finished else pending[0]  # a worker runs its tests in order: the first not done
        for unit in workload.values():
            if crashed in unit:
                unit[crashed] = True  # xdist reports it as crashed; it is done
        self.workqueue.update({scope: unit for scope, unit in workload.items() if not all(unit.values())})
        if finished and not self.assigned_work:
            self.workqueue.clear()  # nobody is left to run them (a crash would have a replacement)
        for other in self.assigned_work:
            self._reschedule(other)
        return crashed

    def _assign_work_unit(self, node: Any) -> None:
        """Give the worker a board no other run holds, if one is left, before one it would wait for."""
        for scope in self.workqueue:
            boards = self.scope_boards.get(scope, ())
            if all(self.is_free(board) for board in boards):
                self.workqueue.move_to_end(scope, last=False)
                break
        super()._assign_work_unit(node)


def board_groups(tests: Iterable[Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """Board -> the boards it shares tests with, directly or through others (sorted):
    the boards one worker must have together."""
    parent: dict[str, str] = {}

    def root(board: str) -> str:
        while parent.setdefault(board, board) != board:
            board = parent[board]
        return board

    for boards in tests:
        for other in boards[1:]:
            parent[root(other)] = root(boards[0])
        if boards:
            root(boards[0])
    members: dict[str, list[str]] = {}
    for board in parent:
        members.setdefault(root(board), []).append(board)
    return {board: tuple(sorted(members[root(board)])) for board in parent}
