"""pytest entry point: options, the ``board`` marker and fixture.

The per-run state lives in :class:`FarmSession` (session.py), registered here
when a farm is configured. Without a farm the plugin stays out of the way.
What only the controller needs (reports, xdist's scheduler) is imported where it
is used: every xdist worker imports this module, and its start-up is CPU that a
small farm host spends once per board.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

import pytest

from . import manners, multiboard, settings, timeoutcompat
from .devicetests import (
    DeviceTests,
    boardfarm_device,  # noqa: F401 - the device tests' fixture, registered with this plugin
)
from .devicetests import add_options as add_device_test_options
from .farmfile import ENV_VAR, find_farm_file
from .inventory import Farm, FarmConfigError, UnknownBoard, load_farm, seconds, seconds_argument, seconds_rule
from .multiboard import boards  # noqa: F401  (the 'boards' fixture, registered with this plugin)
from .pool import FarmBoard
from .results import WORKER_EXIT
from .selection import Filters, command_line_problem, selected_boards
from .session import FARM_KEY, SESSION_KEY, FarmSession
from .settings import DEFAULT_LOCK_TIMEOUT, DEFAULT_LOG_DIR, DEFAULT_RESET, RESET_MODES, add_ini_options
from .timelimit import DEFAULT_SECONDS as DEFAULT_TEST_SECONDS
from .timelimit import HostTimeLimit

AUTO_WORKERS_ENV = "PYTEST_XDIST_AUTO_NUM_WORKERS"  # xdist's: what -n auto means
# bench_scale, 16 boards on 2 cores, 40 tests each: 16 workers 1.3x as fast as 8 (a worker runs its
# boards one after another); with 20 tests each, as fast as 8.
AUTO_WORKERS_PER_CORE = 8
AUTO_WORKER_MEMORY = 100 * 1024 * 1024  # a worker holds ~40-50 MB: twice that leaves the host room

if TYPE_CHECKING:
    from .reporting import FarmReporter
    from .scheduling import BoardScheduling


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("boardfarm", "hardware-in-the-loop tests on a farm of MicroPython boards")
    group.addoption(
        "--farm",
        metavar="PATH",
        help=f"farm inventory (farm.yaml); else ${ENV_VAR}, else ini boardfarm_inventory (relative to the ini file)",
    )
    group.addoption("--board", action="append", default=[], metavar="NAME", help="run only on this board (repeatable)")
    group.addoption("--board-tag", action="append", default=[], metavar="TAG", help="run only on boards with this tag")
    group.addoption(
        "--farm-lock-timeout",
        type=seconds_argument(zero_ok=True),
        metavar="SECONDS",
        help=f"how long to wait for a locked board (default {DEFAULT_LOCK_TIMEOUT:g}; 0: do not wait; "
        "ini boardfarm_lock_timeout)",
    )
    group.addoption(
        "--farm-reset",
        choices=RESET_MODES,
        help=f"when to soft-reset a board between tests (default {DEFAULT_RESET}; ini boardfarm_reset)",
    )
    group.addoption(
        "--farm-timeout",
        type=seconds_argument(zero_ok=False),
        metavar="SECONDS",
        help="deadline for each device operation, overriding farm.yaml and @pytest.mark.board(timeout=...)",
    )
    group.addoption(
        "--farm-test-timeout",
        type=seconds_argument(zero_ok=True),
        metavar="SECONDS",
        help=f"wall-clock limit on the host for each board test (default {DEFAULT_TEST_SECONDS:g}; 0 for none); "
        "@pytest.mark.board(test_timeout=...) sets a test's own; pytest-timeout, where it times a test, takes over",
    )
    group.addoption(
        "--farm-junit", metavar="PATH", help="write a JUnit XML file with one testsuite per board (ini boardfarm_junit)"
    )
    group.addoption(
        "--farm-log-dir",
        metavar="DIR",
        help=f"serial logs, one file per board per test (default {DEFAULT_LOG_DIR} under the rootdir; '' for none; "
        "ini boardfarm_log_dir)",
    )
    group.addoption(
        "--farm-required",
        action="store_true",
        help="no farm configured is an error (default: tests that need a board are skipped; ini boardfarm_required)",
    )
    group.addoption(
        "--farm-flash",
        action="store_true",
        help="before a board's first test, flash farm.yaml's firmware image unless the board proves it runs it",
    )
    parser.addini("boardfarm_inventory", "farm inventory (farm.yaml), relative to the ini file")
    parser.addini("boardfarm_test_timeout", "default for --farm-test-timeout (seconds)")
    parser.addini("boardfarm_flash", "like --farm-flash", type="bool", default=False)
    add_device_test_options(parser)
    add_ini_options(parser)


def _inventory_path(config: pytest.Config) -> str | None:
    found = find_farm_file(config.getoption("farm"), config.getini("boardfarm_inventory") or None, config.inipath)
    return str(found.path) if found else None


def _load(config: pytest.Config) -> Farm | None:
    """The farm for this run (loaded once), or None when none is configured."""
    if FARM_KEY in config.stash:
        return config.stash[FARM_KEY]
    path = _inventory_path(config)
    farm = None
    if path:
        try:
            farm = load_farm(path)
            for name in config.getoption("board"):
                farm.get(name)
        except (FarmConfigError, UnknownBoard) as exc:
            raise pytest.UsageError(str(exc)) from None
        _check_ini_seconds(config, "boardfarm_test_timeout")
        settings.check(config)
        problem = command_line_problem(farm, command_line_filters(config))
        if problem:
            raise pytest.UsageError(problem)
    config.stash[FARM_KEY] = farm
    return farm


def _check_ini_seconds(config: pytest.Config, name: str) -> None:
    """A bad ini value is a usage error before anything runs, not an error in every test."""
    text = config.getini(name)
    if not text:
        return
    try:
        seconds(text, zero_ok=True)
    except ValueError:
        raise pytest.UsageError(f"ini option {name}: expected {seconds_rule(zero_ok=True)}, got {text!r}") from None


def command_line_filters(config: pytest.Config) -> Filters:
    return Filters(names=tuple(config.getoption("board")), tags=tuple(config.getoption("board_tag")))


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before xdist's own answer (the CPU count)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` with a farm: one worker per selected board, up to what the host can carry
    (see ``auto_workers``); a worker then drives several boards, one after another."""
    farm = _load(config)
    if farm is None:
        return None
    return auto_workers(len(selected_boards(farm, command_line_filters(config))))


def auto_workers(board_count: int) -> int:
    """min(board_count, the host's limit): ``PYTEST_XDIST_AUTO_NUM_WORKERS`` if set (xdist's own
    override), else 8 per core this process may use and one per 100 MB of available memory.
    A worker costs the host a start-up (~0.3 s of CPU) and ~40-50 MB, then ~2 ms of CPU per
    test: waiting on a board costs nothing, and a worker runs its boards one after another,
    so a worker per board is fastest as long as the host has the memory. Each board's tests
    still run on one worker, in order."""
    limit = 0
    with contextlib.suppress(ValueError):
        limit = int(os.environ.get(AUTO_WORKERS_ENV, ""))
    if limit <= 0:
        limit = AUTO_WORKERS_PER_CORE * _usable_cores()
        memory = _available_memory()
        if memory is not None:
            limit = min(limit, memory // AUTO_WORKER_MEMORY)
    return max(1, min(board_count, limit))


def _available_memory() -> int | None:
    """Bytes of memory available to new processes (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # a container or taskset may allow fewer than the machine has
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before xdist's own DSession picks one
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> BoardScheduling | None:
    """With a farm, every test of a board runs on one worker, in order, whatever --dist says."""
    farm = config.stash.get(FARM_KEY, None)
    if farm is None:
        return None
    from .scheduling import BoardScheduling

    session = config.stash[SESSION_KEY]
    return BoardScheduling(config, log, farm.names, session.worker_boards.of, session.pool.is_free)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "board(name=None, platform=None, tags=None, timeout=None, test_timeout=None): run this test only on "
        "matching farm boards; timeout: each device operation's deadline, test_timeout: the test's on the host",
    )
    config.pluginmanager.register(DeviceTests(config), "boardfarm-device-tests")  # with or without a farm
    config.addinivalue_line(
        "markers",
        "boards(role={name=, platform=, tags=}, ..., pairing='rotate'|'all'): a test with several boards, "
        "one per role, through the 'boards' fixture",
    )
    farm = _load(config)
    if farm is None:
        if settings.farm_required(config) and not config.getoption("help", False):
            manners.require_farm(config)
        return
    _stop_cleanly_on_sigterm(config)
    _worker_stops_when_told(config)
    _worker_ends_quickly(config)
    if hasattr(config, "workerinput"):
        config.pluginmanager.register(_WorkerExit(config), "boardfarm-worker-exit")
    session = FarmSession(config, farm, command_line_filters(config))
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "boardfarm-session")
    multiboard.register(config, session)
    config.pluginmanager.register(HostTimeLimit(config), "boardfarm-time-limit")
    timeoutcompat.register(config)  # pytest-timeout's clock stops while the farm works
    if not hasattr(config, "workerinput"):  # results are gathered where the reports end up
        from .reporting import FarmReporter

        known = {b.name: {"platform": b.platform} for b in farm.boards}
        reporter = FarmReporter(config, farm.names, session.worker_boards.of, known)
        config.pluginmanager.register(reporter, "boardfarm-reporter")
        _add_html_report(config, farm, reporter)


def _add_html_report(config: pytest.Config, farm: Farm, reporter: FarmReporter) -> None:
    """pytest-html, when it writes a report: a Board column, the farm in its environment table."""
    from . import htmlreport

    if htmlreport.wanted(config):
        html = htmlreport.HtmlReport(config, farm, _inventory_path(config) or "", reporter)
        config.pluginmanager.register(html, "boardfarm-html")


def _stop_cleanly_on_sigterm(config: pytest.Config) -> None:
    """A cancelled CI job gets SIGTERM: end like Ctrl-C, so boards, locks and emulators
    are released and partial reports written (SIGKILL is handled by the kernel)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # someone else (a CI wrapper, pytest-timeout) owns it

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    config.add_cleanup(restore)


def _worker_stops_when_told(config: pytest.Config) -> None:
    """xdist stops a worker busy in a test by interrupting its main thread as SIGINT would,
    which does nothing while SIGINT is ignored (inherited from a script's ``pytest ... &``):
    xdist then SIGKILLs the worker after 10 s, and its labgrid places stay acquired."""
    if not hasattr(config, "workerinput") or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def restore() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    config.add_cleanup(restore)


def _worker_ends_quickly(config: pytest.Config) -> None:
    """An xdist worker's process ends right after its session, and the controller waits for
    every worker to end before it reports. What made that wait long was each interpreter's
    last garbage collection, over every object pytest and the plugins made: with 16 workers
    on 2 cores it took 0.59 s, 0.16-0.19 s with the objects frozen (``gc.freeze``) once the
    session is over. Atexit handlers and module cleanup still run; only that last collection
    skips them, as the process ends. Never in the controller: pytest may run inside a
    user's own process there."""
    if hasattr(config, "workerinput"):
        config.add_cleanup(gc.freeze)  # cleanups run after every pytest_unconfigure


class _WorkerExit:
    """A worker ended by pytest.exit() (in its collection, say) tells the controller why,
    which otherwise sees a worker that finished normally with its tests never run."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        if isinstance(excinfo.value, pytest.exit.Exception):
            self.config.workeroutput[WORKER_EXIT] = str(excinfo.value.msg)  # type: ignore[attr-defined]


@pytest.fixture
def board(request: pytest.FixtureRequest) -> Iterator[FarmBoard]:
    """A connected board at its raw REPL; the test runs once per matching farm board.

    Besides the board API it has its farm.yaml entry: ``spec``, ``platform``,
    ``tags``, ``properties``.
    """
    __tracebackhide__ = True
    session = request.config.stash.get(SESSION_KEY, None)
    if session is None:
        manners.skip_without_farm()
    param: Any = getattr(request, "param", None)
    yield from session.board_for(request.node, param)
