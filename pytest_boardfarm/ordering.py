"""The order a process runs its tests in: a board's tests together, free boards first.

Boards are held from a board's first test to its last. Run one board's tests
together and release it after the last, and a run never holds one board while
it waits for another: two runs that need the same boards in opposite orders
take turns instead of waiting on each other until the lock timeout. Boards no
other run holds right now go first, so the run works while the others finish.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .identity import identify


def order_by_board(items: list[pytest.Item], is_free: Callable[[str], bool]) -> list[pytest.Item]:
    """Tests without a board keep their places; the others fill the remaining places
    board by board (free boards first, then in order of first appearance), each
    board's tests in their own order."""
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        tested = identify(item)
        if tested:
            groups.setdefault(tested.board, []).append(item)
    if len(groups) < 2:
        return list(items)
    boards = sorted(groups, key=lambda board: not is_free(board))  # stable: free ones first
    queue = iter([item for board in boards for item in groups[board]])
    return [next(queue) if identify(item) else item for item in items]
