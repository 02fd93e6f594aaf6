"""The farm's side of one pytest run, in one process (controller or worker).

Parametrizes tests over boards, hands boards to the ``board`` fixture (soft
reset per ``--farm-reset``), attaches each test's serial transcript to its
report, and releases everything at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
import uuid
import warnings
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import health, manners, settings, timeoutcompat
from .board import Board
from .errors import BoardError, DeviceError
from .identity import WorkerBoards, identify, write_worker_boards
from .inventory import Farm
from .ordering import order_by_board
from .pool import Allocated, BoardPool, BoardUnavailable, FarmBoard
from .results import BOARD_PROPERTY, INFO_PROPERTY, SERIAL_SECTION, TEST_PROPERTY, ReportWarning
from .selection import Filters, marker_problems, no_match_reason, selected_boards

FARM_KEY = pytest.StashKey["Farm | None"]()
SESSION_KEY = pytest.StashKey["FarmSession"]()
USED_KEY = pytest.StashKey["BoardUse"]()
# A module object with this attribute true (device test modules): its tests share the board's RAM.
SHARED_RAM = "boardfarm_shared_ram"


@dataclass
class BoardUse:
    """What one test did with its board, for its report."""

    name: str
    board: Board
    mark: int


def _board_suspect(call: pytest.CallInfo[None]) -> bool:
    """Might the board be out of step after this phase? Any failure but the device's own
    exception: a lost connection, a deadline, or a host-side interruption (pytest-timeout,
    the wall-clock limit) in the middle of a raw REPL exchange."""
    error = call.excinfo.value if call.excinfo else None
    return error is not None and not isinstance(error, (DeviceError, pytest.skip.Exception))


def _warn(message: str) -> None:
    """Something about the farm the user must hear of, in the run's warnings summary.

    Never raised (``-W error``): it is told while a lock is taken or released."""
    with contextlib.suppress(Warning):
        warnings.warn(manners.FarmWarning(message), stacklevel=2)


class FarmSession:
    def __init__(self, config: pytest.Config, farm: Farm, command_line: Filters) -> None:
        self.config = config
        self.farm = farm
        self.command_line = command_line
        self.reset_mode = settings.reset_mode(config)
        run_id = os.environ.get("BOARDFARM_RUN_ID") or f"run {uuid.uuid4().hex[:8]}"
        os.environ.setdefault("BOARDFARM_RUN_ID", run_id)  # xdist workers inherit it
        flash = bool(config.getoption("farm_flash") or config.getini("boardfarm_flash"))
        self.pool = BoardPool(
            farm, lock_timeout=settings.lock_timeout(config), run_id=run_id, flash=flash, notice=_warn
        )
        self.worker_boards = WorkerBoards()  # xdist controller: each worker's {test id: board}
        self.last_test_of: dict[str, str] = {}  # board -> its last test here (not under xdist)
        self.log_dir = settings.log_dir(config)
        self._warned: set[str] = set()  # report kinds already warned about: once each

    # -- collection ------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)  # the board comes first in the test id (see scheduling.py)
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        for mark in metafunc.definition.iter_markers("board"):
            problems = marker_problems(mark.args, mark.kwargs)
            if problems:  # a collection error: the run stops before any test runs on the wrong boards
                where = f"{metafunc.definition.nodeid}: @pytest.mark.board"
                raise pytest.Collector.CollectError("\n".join(f"{where}: {p}" for p in problems))
        if "board" not in metafunc.fixturenames:
            return
        if not manners.board_fixture_is_ours(metafunc):  # the project's own `board`: not ours to parametrize
            manners.warn_foreign_board_fixture(metafunc)
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
            [pytest.param(b.name, id=b.name) for b in boards],
            indirect=True,
        )

    @pytest.hookimpl(trylast=True)  # the final order, after pytest's own reordering
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            tested = identify(item)
            if tested:
                item.user_properties += [(BOARD_PROPERTY, tested.board), (TEST_PROPERTY, tested.test)]
        if not hasattr(self.config, "workerinput"):  # under xdist the scheduler orders (all workers alike)
            items[:] = order_by_board(items, self.pool.is_free)

    @pytest.hookimpl(tryfirst=True)  # before xdist's worker sends the collection to the controller
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        write_worker_boards(self.config, session.items)
        if hasattr(self.config, "workerinput"):
            return  # a worker runs only what it is sent: the next test tells (see _release_if_done)
        for item in session.items:
            tested = identify(item)
            if tested:
                self.last_test_of[tested.board] = item.nodeid
        if self.pool.flash and not self.config.option.collectonly:
            self._flash_all_at_once()

    def _flash_all_at_once(self) -> None:
        """Without xdist, flash every board this run uses in parallel before the first test
        (under xdist each worker flashes its own at first use, so they overlap anyway).
        Only boards free now: waiting for one board's lock while holding others could
        hold two runs up against each other; the rest flash when their first test comes."""
        names = [
            name for name in self.last_test_of if self.farm.get(name).firmware is not None and self.pool.is_free(name)
        ]
        self.pool.acquire_many(names)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: object) -> None:
        """In the xdist controller: where this worker tells which test runs on which board."""
        self.worker_boards.configure_node(node)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, object, object]:
        try:
            return (yield)
        finally:
            self._release_if_done(item, nextitem)

    def _release_if_done(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """Release a board after its last test, so this process never holds one board
        while it waits for another (two runs taking two boards in opposite orders).
        Under xdist a board's tests come to a worker together: the next one tells."""
        tested = identify(item)
        if tested is None:
            return
        following = identify(nextitem) if nextitem is not None else None
        if following is not None and following.board == tested.board:
            return
        if self.last_test_of.get(tested.board, item.nodeid) == item.nodeid:
            self.pool.release(tested.board)

    # -- the fixture -----------------------------------------------------------

    def board_for(self, item: pytest.Item, name: str | None) -> Iterator[FarmBoard]:
        __tracebackhide__ = True  # a board that cannot be used is its reason, not the plugin's frames
        if name is None:
            pytest.skip("no matching board")
        with timeoutcompat.paused(item):  # the farm's work, under its own deadlines, is not the test's time
            board = self._set_up(item, name)
        yield board

    def _set_up(self, item: pytest.Item, name: str) -> FarmBoard:
        """The board acquired, checked (or reset) and, if need be, recovered, for this test."""
        __tracebackhide__ = True
        try:
            held = self.pool.acquire(name)
        except BoardUnavailable as exc:
            self._note_health(item, name, None, str(exc))
            raise BoardUnavailable(str(exc)) from None  # the reason, without a long chain
        use = item.stash[USED_KEY] = BoardUse(name, held.board, held.board.transcript.mark())
        try:
            self._ready_for_test(held, item)
        except BoardError as exc:
            log = self.pool.recover(name)  # quarantines the board if this fails or happens too often
            if name not in self.pool.held:
                reason = self.pool.unavailable[name]
                self._note_health(item, name, None, reason)
                raise BoardUnavailable(f"{reason}\n{exc}\n{log.describe()}") from None
            held = self.pool.held[name]
            use.board, use.mark = held.board, held.board.transcript.mark()
        held.board.timeout = self._timeout(item, held)
        self._note_health(item, name, held, None)
        return held.board

    def _ready_for_test(self, held: Allocated, item: pytest.Item) -> None:
        """The health check before each test: the soft reset if one is due, else a probe.

        It runs under this test's deadline, never less than the board's own from
        farm.yaml: neither the previous test's deadline nor a test marked
        ``timeout=0.001`` may make a healthy board fail its check.
        """
        held.board.timeout = max(self._timeout(item, held), held.spec.timeout)
        if not self._reset_if_due(held, item):
            health.probe(held.board)

    def _timeout(self, item: pytest.Item, held: Allocated) -> float:
        """Deadline for each device operation: command line, then marker, then farm.yaml."""
        option = self.config.getoption("farm_timeout")
        if option:
            return float(option)
        marker = item.get_closest_marker("board")
        if marker and marker.kwargs.get("timeout"):
            return float(marker.kwargs["timeout"])
        return held.spec.timeout

    def _note_health(self, item: pytest.Item, name: str, held: Allocated | None, problem: str | None) -> None:
        outcome = self.pool.flashed.get(name)
        if problem is not None and outcome is not None and not outcome.ok:  # the test errors say why
            status = "quarantined: flashing failed" if outcome.result == "failed" else "not tested: image failed"
        elif problem is not None:
            status = problem.removeprefix(f"board {name} ")
        elif held is not None and held.recoveries:
            status = f"ok (recovered {len(held.recoveries)}x)"
        else:
            status = "ok"
        # JSON: pytest's --junitxml writes a property's str(), which for a dict is Python's repr
        item.user_properties.append((INFO_PROPERTY, json.dumps(self._identity(name, held, status))))

    def _identity(self, name: str, held: Allocated | None, health: str) -> dict[str, str]:
        """What reports say about the board: farm.yaml facts, then what it told us."""
        spec = self.farm.get(name)
        out = {"platform": spec.platform, "port": spec.port or spec.serial_number or spec.emulator or ""}
        if held is not None:
            out["port"] = held.url
            if held.info is not None:
                out.update(firmware=held.info.firmware, unique_id=held.info.unique_id)
        outcome = self.pool.flashed.get(name)
        if outcome is not None:  # flashed, skipped or rolled back in this run
            out.update(image=outcome.running, flash=outcome.result)
        out["health"] = health
        out.update({f"property.{k}": v for k, v in spec.properties.items()})
        return out

    def _reset_if_due(self, held: Allocated, item: pytest.Item) -> bool:
        module = getattr(item, "module", None)
        module_name = str(getattr(module, "__name__", ""))  # "" for a test with no module
        mode = self.reset_mode
        if mode == "test" and getattr(module, SHARED_RAM, False):
            mode = "module"  # device test functions share their module's RAM, as tests share a module on the host
        first = held.last_module is None  # what an earlier run or command left in its RAM is not this run's
        due = {
            "test": True,
            "module": first or held.last_module != module_name,
            "session": first,
            "never": False,
        }[mode]
        held.last_module = module_name
        if due:
            held.board.soft_reset()
        return due

    # -- reports ---------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        use = item.stash.get(USED_KEY, None)
        if use is not None:
            self.report_board_use(item, call, report, use)
        return report

    def report_board_use(
        self, item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport, use: BoardUse
    ) -> None:
        """One board's part of a test's report (multiboard.py calls it per board): its
        serial log, a recovery if the failure may have left it out of step, its log file."""
        if call.when == "call" or report.failed:
            text = use.board.transcript.text(use.mark)
            if text.strip():
                report.sections.append((f"{SERIAL_SECTION} {use.name} ({call.when})", text))
        if report.failed and _board_suspect(call):
            with timeoutcompat.paused(item):
                self._recover_after(item, use, report)
        if call.when == "teardown" and self.log_dir is not None:
            self._write_log(item, use)

    def _recover_after(self, item: pytest.Item, use: BoardUse, report: pytest.TestReport) -> None:
        """The test failed because of the board: make sure it answers before the next test."""
        held = self.pool.held.get(use.name)
        if held is None:
            return
        started = time.monotonic()
        if not held.board.interrupt_failed:  # a board that ignored Ctrl-C would only time out again
            try:
                health.probe(held.board)
                return
            except BoardError:
                pass
        log = self.pool.recover(use.name)
        report.duration += time.monotonic() - started  # recovering is part of what this test cost
        report.sections.append((f"board recovery {use.name}", log.describe()))
        self._note_health(item, use.name, self.pool.held.get(use.name), self.pool.unavailable.get(use.name))
        report.user_properties.append(item.user_properties[-1])

    def _write_log(self, item: pytest.Item, use: BoardUse) -> None:
        """The test's whole serial transcript: <log dir>/<board>/<file>__<test>.log."""
        nodeid = item.nodeid  # whole: "@" is part of an id (test_login[sim-1-user@example.com])
        module, _, test = nodeid.partition("::")
        stem = re.sub(r"[^A-Za-z0-9_.\[\]-]+", "_", f"{Path(module).stem}__{test}")[:150]
        path = self.log_dir / use.name / f"{stem}.log"  # type: ignore[operator]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"# {nodeid} on {use.name}\n{use.board.transcript.text(use.mark)}", encoding="utf-8")
        except (OSError, ValueError) as exc:  # a report never stops the tests
            self._warn_once("serial log", f"could not write the serial log {path}: {exc}")

    def _warn_once(self, kind: str, text: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            message = f"{text}; the tests go on (further {kind} failures are not reported)"
            try:
                warnings.warn(ReportWarning(message), stacklevel=1)
            except Warning:  # -W error: still never a reason to stop the run
                print(f"boardfarm: WARNING: {message}", file=sys.stderr)

    def pytest_sessionfinish(self) -> None:
        self.pool.release_all()

    def pytest_unconfigure(self) -> None:
        self.pool.release_all()
        self.worker_boards.close()
