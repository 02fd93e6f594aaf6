"""pytest-xdist scheduling: all tests of one board on one worker, in order.

xdist's loadscope scheduler sends whole scopes to workers; here a test's scope
is its board. The controller never collects, so the board of each test id comes
from the map its worker wrote at collection (identity.py); a test id missing
from it (a remote worker) falls back to the id's text, when only one board name
fits, else the test is a scope of its own. A worker that needs work gets a
board no other run holds, while one is left, rather than wait. (xdist's own ``loadgroup`` mode
cannot be used: it tags items by writing ``item._nodeid``, which pytest 9.2 no
longer reads.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
        self.board_of: dict[str, str | None] = {}
        self.scope_board: dict[str, str] = {}

    def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
        found = self.collected_by(node.gateway.id)
        for nodeid in collection:
            if found is not None:  # the worker said: a test it did not list has no board
                self.board_of[nodeid] = found[nodeid].board if nodeid in found else None
            elif nodeid not in self.board_of:
                self.board_of[nodeid] = guess_board(nodeid, self.boards)
        super().add_node_collection(node, collection)

    def _split_scope(self, nodeid: str) -> str:
        board = self.board_of.get(nodeid)
        if not board:
            return nodeid
        scope = f"board {board}"
        self.scope_board[scope] = board
        return scope

    def remove_node(self, node: Any) -> str | None:
        """As xdist's, but the test that crashed its worker is not queued again: xdist's
        loadscope would run it again on each replacement worker until its crash limit
        stops the run, and the board's later tests never run."""
        workload = self.assigned_work.pop(node)
        pending: list[str] = [nodeid for unit in workload.values() for nodeid, done in unit.items() if not done]
        if not pending:
            return None
        crashed = pending[0]  # a worker runs its tests in order: the first not done is the one
        for unit in workload.values():
            if crashed in unit:
                unit[crashed] = True  # xdist reports it as crashed; it is done
        self.workqueue.update({scope: unit for scope, unit in workload.items() if not all(unit.values())})
        for other in self.assigned_work:
            self._reschedule(other)
        return crashed

    def _assign_work_unit(self, node: Any) -> None:
        """Give the worker a board no other run holds, if one is left, before one it would wait for."""
        for scope in self.workqueue:
            board = self.scope_board.get(scope)
            if board is None or self.is_free(board):
                self.workqueue.move_to_end(scope, last=False)
                break
        super()._assign_work_unit(node)
