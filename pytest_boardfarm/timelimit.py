"""A wall-clock limit on the host for each board test.

Device deadlines bound what the board does; nothing bounded what the host does
between board calls (a ``time.sleep(1e6)``, a socket without a timeout), and
such a test held its board forever. Each board test's setup and call together
get a limit, its teardown the same again: SIGALRM interrupts the main thread
and the phase fails with :class:`HostTimeLimitExceeded` (the session then
checks the board before its next test, see session.py).

pytest-timeout does the same job: when it times a test, it owns that test's
clock and SIGALRM, and this stays out of its way.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytest

DEFAULT_SECONDS = 600.0


class HostTimeLimitExceeded(BaseException):
    """A board test ran past its wall-clock limit on the host.

    A BaseException, like pytest's own outcomes, so a test's ``except Exception``
    cannot swallow it.
    """


def limit_for(item: pytest.Item) -> float:
    """Seconds this test may take on the host: its marker, else the farm default; 0 for none."""
    marker = item.get_closest_marker("board")
    if marker is not None and marker.kwargs.get("test_timeout") is not None:
        return float(marker.kwargs["test_timeout"])
    option = item.config.getoption("farm_test_timeout")
    if option is not None:
        return float(option)
    ini = item.config.getini("boardfarm_test_timeout")
    return float(ini) if ini else DEFAULT_SECONDS


def timed_by_pytest_timeout(item: pytest.Item) -> bool:
    """Does pytest-timeout put a timeout on this test? (Then its clock is the one that counts.)"""
    plugin: Any = item.config.pluginmanager.get_plugin("timeout")
    if plugin is None:
        return False
    try:
        seconds = plugin._get_item_settings(item).timeout
    except Exception:  # another version: assume it times what has a marker or a global setting
        seconds = 1 if item.get_closest_marker("timeout") else getattr(item.config, "_env_timeout", None)
    return bool(seconds) and float(seconds) > 0


def can_interrupt() -> bool:
    """SIGALRM is ours to use: there is one, we are in the main thread, nobody else handles it."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        return False
    return signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.SIG_IGN, None)


class Budget:
    """The time one phase (or phases) of a test has left, spent as they run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.remaining = seconds

    @contextmanager
    def running(self) -> Iterator[None]:
        def expired(signum: int, frame: FrameType | None) -> None:
            __tracebackhide__ = True
            raise HostTimeLimitExceeded(f"the test exceeded its wall-clock limit of {self.seconds:g} s on the host")

        start = time.monotonic()
        previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, max(self.remaining, 0.001))
        try:
            yield
        finally:
            try:
                signal.setitimer(signal.ITIMER_REAL, 0)
            finally:  # even if the alarm went off just now
                signal.signal(signal.SIGALRM, previous)
                self.remaining -= time.monotonic() - start


BUDGET_KEY = pytest.StashKey["Budget | None"]()


class HostTimeLimit:
    """The pytest side: each board test's setup and call share one budget; teardown gets its own."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def _budget(self, item: pytest.Item) -> Budget | None:
        """The host time this board test may take, or None when it is not ours to limit."""
        if not {"board", "boards"} & set(getattr(item, "fixturenames", ())):
            return None
        if self.config.getoption("usepdb", False) or self.config.getoption("trace", False):
            return None  # a person at a debugger prompt is not a hang
        seconds = limit_for(item)
        if seconds <= 0 or timed_by_pytest_timeout(item) or not can_interrupt():
            return None
        return Budget(seconds)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        __tracebackhide__ = True  # the wall-clock limit is not where a test's error is
        budget = item.stash[BUDGET_KEY] = self._budget(item)
        with budget.running() if budget else contextlib.nullcontext():
            return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        __tracebackhide__ = True
        budget = item.stash.get(BUDGET_KEY, None)  # what setup left of it
        with budget.running() if budget else contextlib.nullcontext():
            return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        __tracebackhide__ = True
        budget = item.stash.get(BUDGET_KEY, None)
        fresh = Budget(budget.seconds) if budget else None  # cleanup gets its own, even after a timeout
        with fresh.running() if fresh else contextlib.nullcontext():
            return (yield)
