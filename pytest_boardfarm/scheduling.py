"""pytest-xdist scheduling: all tests of one board on one worker, in order.

xdist's loadscope scheduler sends whole scopes to workers; here a test's scope
is its board. The board is read from the test id, where the plugin puts it
first (``test_x[sim-1-0]``); the controller knows the farm's board names, so
the longest name the id starts with is the board. (xdist's own ``loadgroup``
mode cannot be used: it tags items by writing ``item._nodeid``, which pytest
9.2 no longer reads.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling


def board_of(nodeid: str, boards: Sequence[str]) -> str | None:
    """The board a test id was parametrized with, or None for a test without one."""
    if "[" not in nodeid:
        return None
    params = nodeid.split("[", 1)[1].rsplit("]", 1)[0]
    found = [name for name in boards if params == name or params.startswith(name + "-")]
    return max(found, key=len) if found else None


class BoardScheduling(LoadScopeScheduling):  # type: ignore[misc]
    def __init__(self, config: pytest.Config, log: Any, boards: Sequence[str]) -> None:
        super().__init__(config, log)
        self.boards = list(boards)

    def _split_scope(self, nodeid: str) -> str:
        return board_of(nodeid, self.boards) or nodeid
