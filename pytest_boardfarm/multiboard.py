"""Tests that need several boards: ``@pytest.mark.boards(role=filters, ..., pairing=...)``.

A test that asks for the ``boards`` fixture runs once per combination of
distinct farm boards for its roles (one board never plays two roles in one
test), with an id naming them in role order (``test_radio[sim-1+sim-2]``):

- ``pairing="rotate"`` (the default): the fewest combinations in which every
  board plays every role it matches at least once (3 boards, 2 roles: 3);
- ``pairing="all"``: every ordered combination (3 boards, 2 roles: 6).

A ``@pytest.mark.board(...)`` on the test (or its module or class) narrows the
boards every role picks from, as it narrows a single-board test's boards.

The boards are the test's ``boards`` parameter (a tuple of names, identity.py).
They are acquired together or not at all (``BoardPool.acquire_together``), and
a process runs its multi-board tests after all its single-board tests, so it
never holds one board while it waits for another; under xdist all tests of
boards that share a test go to one worker (scheduling.py).

Reports count a multi-board test once under each of its boards, each with that
board's serial log (results.py).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from .errors import BoardError
from .farmfile import ENV_VAR
from .identity import BOARDS_ARG, identify_all
from .inventory import Farm, did_you_mean, short_repr
from .ordering import order_by_board
from .pool import BoardUnavailable, FarmBoard
from .results import BOARDS_INFO_PROPERTY, BOARDS_PROPERTY, TEST_PROPERTY
from .selection import Filters, selected_boards
from .session import SESSION_KEY, BoardUse, FarmSession

MARK = "boards"
PAIRINGS = ("rotate", "all")
ROLE_KEYS = ("name", "platform", "tags")
# The exact search for the fewest rotate combinations tries at most this many sets;
# beyond it a greedy cover is used (never more than a few extra items).
SEARCH_LIMIT = 50_000
USED_KEY = pytest.StashKey["list[BoardUse]"]()
ANY_BOARD = Filters()


@dataclass(frozen=True)
class BoardsRequest:
    """What ``@pytest.mark.boards(...)`` asks for: roles in order, and how to pair boards."""

    roles: tuple[tuple[str, Filters], ...]
    pairing: str = "rotate"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(role for role, _ in self.roles)


def parse_marker(args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[BoardsRequest | None, list[str]]:
    """The request, or the problems with the marker (a typo must not run a test everywhere)."""
    problems = [f"positional argument {short_repr(arg)} not allowed; use role={{...filters}}" for arg in args]
    pairing = kwargs.get("pairing", "rotate")
    if pairing not in PAIRINGS:
        problems.append(f"pairing={short_repr(pairing)}: expected one of {', '.join(map(repr, PAIRINGS))}")
    roles = []
    for role, filters in kwargs.items():
        if role == "pairing":
            continue
        if not isinstance(filters, Mapping):
            problems.append(
                f"role {role!r}: expected a dict of filters ({', '.join(ROLE_KEYS)}), got {short_repr(filters)}"
            )
            continue
        for key, value in filters.items():
            if key not in ROLE_KEYS:
                hint = did_you_mean(str(key), ROLE_KEYS)
                problems.append(f"role {role!r}: unknown filter {key!r}{hint}; known: {', '.join(ROLE_KEYS)}")
            elif not (value is None or isinstance(value, str) or _is_str_list(value)):
                problems.append(f"role {role!r}: {key}={short_repr(value)}: expected a string or a list of strings")
        roles.append((role, Filters.from_marker(filters)))
    if not roles and not args:
        problems.append("no roles: name each board's role with its filters, e.g. sender={'platform': 'microbit'}")
    if problems:
        return None, problems
    return BoardsRequest(tuple(roles), str(pairing)), []


def _is_str_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def combinations(candidates: Sequence[Sequence[str]], pairing: str = "rotate") -> list[tuple[str, ...]]:
    """Board combinations, one board per role (``candidates[i]``: the boards role i matches).

    ``all``: every ordered combination of distinct boards. ``rotate``: the fewest
    of them in which every board plays every role it can play at least once
    (exact up to ``SEARCH_LIMIT`` sets tried, else a greedy cover).
    """
    valid = [combo for combo in itertools.product(*candidates) if len(set(combo)) == len(combo)]
    if pairing == "all" or not valid:
        return valid
    needed = {(role, board) for combo in valid for role, board in enumerate(combo)}
    covers = [set(enumerate(combo)) for combo in valid]
    greedy = _greedy_cover(covers, needed)
    fewest = max(sum(1 for role, _ in needed if role == r) for r in range(len(candidates)))
    for size in range(fewest, len(greedy)):
        if math.comb(len(valid), size) > SEARCH_LIMIT:
            break
        for chosen in itertools.combinations(range(len(valid)), size):
            if set().union(*(covers[i] for i in chosen)) == needed:
                return [valid[i] for i in chosen]
    return [valid[i] for i in sorted(greedy)]


def _greedy_cover(covers: list[set[tuple[int, str]]], needed: set[tuple[int, str]]) -> list[int]:
    left, chosen = set(needed), []
    while left:
        best = max(range(len(covers)), key=lambda i: (len(covers[i] & left), -i))
        chosen.append(best)
        left -= covers[best]
    return chosen


def no_combination_reason(
    farm: Farm, command_line: Filters, request: BoardsRequest, narrowed: Filters = ANY_BOARD
) -> str:
    available = narrowed.apply(selected_boards(farm, command_line))
    parts = []
    for role, filters in request.roles:
        matching = ", ".join(b.name for b in filters.apply(available)) or "none"
        parts.append(f"{role} ({filters.describe()}: {matching})")
    among = "" if narrowed == ANY_BOARD else f", among the boards @pytest.mark.board({narrowed.describe()}) selects"
    return f"no combination of distinct boards for roles {'; '.join(parts)}{among}"


def board_marker_filters(definition: pytest.Item) -> Filters:
    """``@pytest.mark.board``'s filters (its closest one, as for a single-board test): on a
    multi-board test they narrow the boards every role may pick from; its timeouts apply too."""
    marker = definition.get_closest_marker("board")
    return Filters.from_marker(marker.kwargs if marker else {})


def order_multi_last(items: list[pytest.Item], *, group_singles: bool) -> list[pytest.Item]:
    """Multi-board tests after every single-board test (grouped by their boards), so a
    process takes several boards only once it is done with single ones. ``group_singles``
    (an xdist worker, where the scheduler sends a group's tests in this order): each
    board's single tests together, in order of first appearance, the same in every worker."""
    multi = [item for item in items if (identify_all(item) or _NONE).multi]
    if not multi:
        return items
    rest = [item for item in items if not (identify_all(item) or _NONE).multi]
    if group_singles:
        rest = order_by_board(rest, lambda board: True)
    multi.sort(key=lambda item: sorted(identify_all(item).every))  # type: ignore[union-attr]
    return rest + multi


class _NoBoards:
    multi = False


_NONE = _NoBoards()


class MultiBoards:
    """The per-process plugin: parametrizes, orders, hands out and reports multi-board tests.
    The per-board steps (health check, deadlines, identity, recovery, logs) are the
    single-board session's own."""

    def __init__(self, session: FarmSession) -> None:
        self.session = session

    @pytest.hookimpl(tryfirst=True)  # the boards come first in the test id, as for one board
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        marker = metafunc.definition.get_closest_marker(MARK)
        where = f"{metafunc.definition.nodeid}: @pytest.mark.boards"
        if marker is None:
            if BOARDS_ARG in metafunc.fixturenames:
                raise pytest.Collector.CollectError(f"{where}: the 'boards' fixture needs the marker, naming roles")
            return
        request, problems = parse_marker(marker.args, marker.kwargs)
        if "board" in metafunc.fixturenames:
            problems.append("a test takes 'board' or 'boards', not both")
        if problems or request is None:
            raise pytest.Collector.CollectError("\n".join(f"{where}: {p}" for p in problems))
        if BOARDS_ARG not in metafunc.fixturenames:
            return
        narrowed = board_marker_filters(metafunc.definition)
        available = narrowed.apply(selected_boards(self.session.farm, self.session.command_line))
        candidates = [[b.name for b in filters.apply(available)] for _, filters in request.roles]
        combos = combinations(candidates, request.pairing)
        if not combos:
            reason = no_combination_reason(self.session.farm, self.session.command_line, request, narrowed)
            skip = pytest.param(None, id="no-boards", marks=pytest.mark.skip(reason=reason))
            metafunc.parametrize(BOARDS_ARG, [skip], indirect=True)
            return
        params = [pytest.param(combo, id="+".join(combo)) for combo in combos]
        metafunc.parametrize(BOARDS_ARG, params, indirect=True)

    @pytest.hookimpl(wrapper=True)  # after the session's own ordering
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> Generator[None, None, None]:
        result = yield
        for item in items:
            tested = identify_all(item)
            if tested and tested.multi:
                item.user_properties += [(BOARDS_PROPERTY, list(tested.boards)), (TEST_PROPERTY, tested.test)]
        items[:] = order_multi_last(items, group_singles=hasattr(self.session.config, "workerinput"))
        return result

    def boards_for(self, item: pytest.Item, names: tuple[str, ...] | None) -> Iterator[dict[str, FarmBoard]]:
        __tracebackhide__ = True
        if names is None:
            pytest.skip("no matching boards")
        marker = item.get_closest_marker(MARK)
        request, _ = parse_marker(marker.args if marker else (), marker.kwargs if marker else {})
        assert request is not None  # checked at collection
        session, pool = self.session, self.session.pool
        try:
            pool.acquire_together(names)
        except BoardUnavailable as exc:
            raise BoardUnavailable(str(exc)) from None
        uses = item.stash[USED_KEY] = []
        identities = {}
        for name in names:
            held = pool.held[name]
            use = BoardUse(name, held.board, held.board.transcript.mark())
            uses.append(use)
            try:
                session._ready_for_test(held, item)
                status = f"ok (recovered {len(held.recoveries)}x)" if held.recoveries else "ok"
            except BoardError as exc:
                log = pool.recover(name)
                if name not in pool.held:
                    raise BoardUnavailable(f"{pool.unavailable[name]}\n{exc}\n{log.describe()}") from None
                held = pool.held[name]
                use.board, use.mark = held.board, held.board.transcript.mark()
                status = f"ok (recovered {len(held.recoveries)}x)"
            held.board.timeout = session._timeout(item, held)
            identities[name] = session._identity(name, held, status)
        item.user_properties.append(
            (BOARDS_INFO_PROPERTY, json.dumps(identities))
        )  # JSON in --junitxml, as for one board
        yield {role: use.board for role, use in zip(request.names, uses, strict=True)}  # type: ignore[misc]

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        for use in item.stash.get(USED_KEY, []):
            self.session.report_board_use(item, call, report, use)
        return report


@pytest.fixture
def boards(request: pytest.FixtureRequest) -> Iterator[dict[str, FarmBoard]]:
    """Connected boards by role (``@pytest.mark.boards(sender={...}, receiver={...})``):
    ``boards["sender"]``; the test runs once per combination of farm boards."""
    __tracebackhide__ = True
    session = request.config.stash.get(SESSION_KEY, None)
    plugin = request.config.pluginmanager.get_plugin(PLUGIN_NAME)
    if session is None or not isinstance(plugin, MultiBoards):
        raise pytest.UsageError(f"the 'boards' fixture needs a farm: pass --farm farm.yaml or set {ENV_VAR}")
    yield from plugin.boards_for(request.node, getattr(request, "param", None))


PLUGIN_NAME = "boardfarm-multiboard"


def register(config: pytest.Config, session: FarmSession) -> None:
    """Called by plugin.py once the farm session exists."""
    config.pluginmanager.register(MultiBoards(session), PLUGIN_NAME)
