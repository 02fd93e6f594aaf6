"""pytest-timeout and the farm: its clock times the test, not the farm's work around it.

pytest-timeout starts its clock before setup (or before the call, ``func_only``).
A board's setup (waiting for its lock, a soft reset, flashing, the recovery of a
board the previous test left busy) runs under the farm's own deadlines, and was
counted against the test: a test could time out in a soft reset it had nothing
to do with. While the farm works, pytest-timeout's clock is stopped, and then
goes on with what the test had left.

Only pytest-timeout's public hooks are used (``pytest_timeout_set_timer`` and
``pytest_timeout_cancel_timer``), plus, for its signal method, the interval
timer it set: stopping that keeps its handler and message as they are.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

PLUGIN_NAME = "boardfarm-timeout-clock"


@dataclass
class Running:
    """pytest-timeout's clock for one test, as last set."""

    started: float  # time.monotonic()
    settings: Any  # pytest_timeout.Settings (a NamedTuple): timeout, method, ...

    @property
    def signal_method(self) -> bool:
        return bool(self.settings.method == "signal" and threading.current_thread() is threading.main_thread())


CLOCK_KEY = pytest.StashKey["Running | None"]()


class TimeoutClock:
    """Records when pytest-timeout sets a test's timer (registered only with pytest-timeout)."""

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> None:
        item.stash[CLOCK_KEY] = Running(time.monotonic(), settings)  # None: pytest-timeout's own impl sets it

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> None:
        item.stash[CLOCK_KEY] = None


def register(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("timeout") and not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(TimeoutClock(), PLUGIN_NAME)


@contextmanager
def paused(item: pytest.Item) -> Iterator[None]:
    """pytest-timeout's clock for ``item`` stopped while the block runs (the farm's own work)."""
    running = item.stash.get(CLOCK_KEY, None)
    if running is None:
        yield
        return
    if running.signal_method:
        remaining, _ = signal.setitimer(signal.ITIMER_REAL, 0)  # its handler stays installed
        try:
            yield
        finally:
            if remaining > 0:  # 0: it fired already (the test failed with its message)
                signal.setitimer(signal.ITIMER_REAL, remaining)
        return
    left = float(running.settings.timeout) - (time.monotonic() - running.started)
    hook: Any = item.config.hook
    hook.pytest_timeout_cancel_timer(item=item)  # a thread timer cannot be stopped: cancelled, then set anew
    try:
        yield
    finally:
        # what the test had left (a clock that ran out while the farm worked: out now)
        hook.pytest_timeout_set_timer(item=item, settings=running.settings._replace(timeout=max(left, 0.01)))
