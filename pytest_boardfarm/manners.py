"""How the plugin behaves in a project that has its own pytest setup.

It takes nothing that is not its own (a project's own ``board`` fixture stays
the project's), and it says what it does instead of surprising: no farm means
the board tests are skipped with the reason, unless the run says a farm is
required.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, NoReturn

import pytest

from .farmfile import ENV_VAR

FIXTURE = "board"
NO_FARM = (
    f"no farm configured: pass --farm farm.yaml, set ${ENV_VAR} or the ini option boardfarm_inventory "
    "(--farm-required makes this an error)"
)


class FarmWarning(UserWarning):
    """pytest-boardfarm stayed out of the way of something in the project, or tells of the farm
    (a place taken over from a dead run, a place it could not release)."""


def require_farm(config: pytest.Config) -> NoReturn:
    """``--farm-required`` (or ini ``boardfarm_required``) with no farm: stop before anything runs."""
    raise pytest.UsageError(
        f"no farm configured, and a farm is required (--farm-required or ini boardfarm_required): "
        f"pass --farm farm.yaml, set ${ENV_VAR} or the ini option boardfarm_inventory"
    )


def skip_without_farm() -> NoReturn:
    """A board test on a machine without a farm: skipped, never an error (a laptop run)."""
    __tracebackhide__ = True
    pytest.skip(NO_FARM)


def _is_ours(fixturedef: Any) -> bool:
    func = getattr(fixturedef, "func", None)
    return getattr(func, "__module__", None) == "pytest_boardfarm.plugin" and getattr(func, "__name__", "") == FIXTURE


def board_fixture_is_ours(metafunc: pytest.Metafunc) -> bool:
    """Does this test's ``board`` come from the plugin (possibly wrapped by a project
    fixture that asks for ``board`` itself), or is it a fixture of the project's own?"""
    fixtureinfo: Any = getattr(metafunc.definition, "_fixtureinfo", None)
    chain = list(getattr(fixtureinfo, "name2fixturedefs", {}).get(FIXTURE, ()))
    for fixturedef in reversed(chain):  # the closest definition first
        if _is_ours(fixturedef):
            return True
        if FIXTURE not in getattr(fixturedef, "argnames", ()):
            return False  # a fixture of the project's own that does not build on ours
    return not chain  # nothing known: assume the plugin's (pytest resolves it later)


def warn_foreign_board_fixture(metafunc: pytest.Metafunc) -> None:
    """Say that a test uses the project's ``board``, so it does not run on the farm."""
    fixtureinfo: Any = getattr(metafunc.definition, "_fixtureinfo", None)
    chain = list(getattr(fixtureinfo, "name2fixturedefs", {}).get(FIXTURE, ()))
    where = _where(chain[-1].func) if chain else "this project"
    metafunc.definition.warn(
        FarmWarning(
            f"the 'board' fixture of this test is the project's own ({where}), not pytest-boardfarm's: "
            "the test is not run on the farm's boards (rename the fixture to use both)"
        )
    )


def _where(func: Any) -> str:
    try:
        path = inspect.getsourcefile(func)
        line = inspect.getsourcelines(func)[1]
    except (OSError, TypeError):
        return getattr(func, "__qualname__", repr(func))
    return f"{Path(path).name if path else '?'}:{line}"
