"""The farm's side of one pytest run, in one process (controller or worker).

Parametrizes tests over boards, hands boards to the ``board`` fixture (soft
reset per ``--farm-reset``), attaches each test's serial transcript to its
report, and releases everything at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import pytest

from .board import Board
from .inventory import Farm
from .pool import Allocated, BoardPool, BoardUnavailable
from .selection import Filters, no_match_reason, selected_boards

FARM_KEY = pytest.StashKey["Farm | None"]()
SESSION_KEY = pytest.StashKey["FarmSession"]()
USED_KEY = pytest.StashKey["BoardUse"]()


@dataclass
class BoardUse:
    """What one test did with its board, for its report."""

    name: str
    board: Board
    mark: int


class FarmSession:
    def __init__(self, config: pytest.Config, farm: Farm, command_line: Filters) -> None:
        self.config = config
        self.farm = farm
        self.command_line = command_line
        self.reset_mode: str = config.getoption("farm_reset")
        run_id = os.environ.get("BOARDFARM_RUN_ID") or f"run {uuid.uuid4().hex[:8]}"
        os.environ.setdefault("BOARDFARM_RUN_ID", run_id)  # xdist workers inherit it
        self.pool = BoardPool(farm, lock_timeout=config.getoption("farm_lock_timeout"), run_id=run_id)

    # -- collection ------------------------------------------------------------

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "board" not in metafunc.fixturenames:
            return
        marker = metafunc.definition.get_closest_marker("board")
        wanted = Filters.from_marker(marker.kwargs if marker else {})
        boards = wanted.apply(selected_boards(self.farm, self.command_line))
        if not boards:
            reason = no_match_reason(self.farm, self.command_line, wanted)
            metafunc.parametrize(
                "board", [pytest.param(None, id="no-board", marks=pytest.mark.skip(reason=reason))], indirect=True
            )
            return
        metafunc.parametrize(
            "board",
            [pytest.param(b.name, id=b.name, marks=pytest.mark.xdist_group(b.name)) for b in boards],
            indirect=True,
        )

    # -- the fixture -----------------------------------------------------------

    def board_for(self, item: pytest.Item, name: str | None) -> Iterator[Board]:
        if name is None:
            pytest.skip("no matching board")
        try:
            held = self.pool.acquire(name)
        except BoardUnavailable as exc:
            raise BoardUnavailable(str(exc)) from None  # the reason, without a long chain
        mark = held.board.transcript.mark()
        item.stash[USED_KEY] = BoardUse(name, held.board, mark)
        self._reset_if_due(held, item)
        yield held.board

    def _reset_if_due(self, held: Allocated, item: pytest.Item) -> None:
        module = getattr(item, "module", None)
        module_name = getattr(module, "__name__", None)
        due = {
            "test": True,
            "module": held.last_module is not None and held.last_module != module_name,
            "session": False,
            "never": False,
        }[self.reset_mode]
        held.last_module = module_name
        if due:
            held.board.soft_reset()

    # -- reports ---------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        use = item.stash.get(USED_KEY, None)
        if use is not None and (call.when == "call" or report.failed):
            text = use.board.transcript.text(use.mark)
            if text.strip():
                report.sections.append((f"serial log {use.name} ({call.when})", text))
        return report

    def pytest_sessionfinish(self) -> None:
        self.pool.release_all()

    def pytest_unconfigure(self) -> None:
        self.pool.release_all()
